#!/usr/bin/env bash
# The real egress proxy (contrib/egress) with HTTPS: paths and credentials
# of HTTPS requests can only be enforced with TLS interception, so the client
# trusts mitmproxy's CA (made in the proxy's confdir on its first start, no
# network needed) and the proxy verifies the upstream against that upstream's
# own self-signed certificate (ssl_verify_upstream_trusted_ca; ssl_insecure
# is not needed). curl speaks HTTP/2 to the proxy here, so the :authority
# check is exercised too. No daemon: the routes file is written by hand, in
# the daemon's canonical form.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/egress.sh"
egress_require
br_tmpdir
export EGRESS_TOKEN_0=tok-https-0

# An address of this host that is not loopback: HTTPS carries the credential
# to it (plain http does not, test_egress_proxy).
far=$(host_address)

# A self-signed certificate for 127.0.0.1 (and $far), made with the
# cryptography module that mitmproxy itself depends on (so the python that
# runs mitmdump has it).
"$EGRESS_PY" - "$BR_TMP/upstream.pem" "$BR_TMP/upstream.key" ${far:+"$far"} <<'PY'
import datetime, ipaddress, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "egress test upstream")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (
    x509.CertificateBuilder()
    .subject_name(name)
    .issuer_name(name)
    .public_key(key.public_key())
    .serial_number(x509.random_serial_number())
    .not_valid_before(now - datetime.timedelta(hours=1))
    .not_valid_after(now + datetime.timedelta(days=1))
    .add_extension(
        x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(a)) for a in ["127.0.0.1"] + sys.argv[3:]]),
        critical=False,
    )
    .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    .sign(key, hashes.SHA256())
)
open(sys.argv[1], "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open(sys.argv[2], "wb").write(
    key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
)
PY
if [[ -n $far ]]; then
  start_upstream --tls "$BR_TMP/upstream.pem" "$BR_TMP/upstream.key" --bind "$far"
  far_port=$UP_PORT far_record=$UP_RECORD
fi
start_upstream --tls "$BR_TMP/upstream.pem" "$BR_TMP/upstream.key"
up=https://127.0.0.1:$UP_PORT

mkdir "$BR_TMP/egress"
routes=$BR_TMP/egress/egress_routes.yaml
status=$BR_TMP/egress.status.json
"$EGRESS_PY" - "$routes" ${far:+"$far"} <<'PY'
import json, sys
auth = {"auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0"}
routes = [dict(host="127.0.0.1", path_allowlist=["/user"], **auth)]
routes += [dict(host=far, path_allowlist=["/far/"], **auth) for far in sys.argv[2:]]
open(sys.argv[1], "w").write(json.dumps({"routes": routes}, indent=2) + "\n")
PY
start_egress "$routes" "$status" "$BR_TMP/egress.pid" -- --set "ssl_verify_upstream_trusted_ca=$BR_TMP/upstream.pem"
ca=$BR_TMP/mitmproxy/mitmproxy-ca-cert.pem
[[ -s $ca ]] || fail "mitmproxy made no CA in its confdir: $(ls "$BR_TMP/mitmproxy")"
tls=(--cacert "$ca")

echo "# allowed over HTTPS: the credential is injected inside the tunnel"
expect_code 200 "$up/user" "${tls[@]}" -H 'Authorization: Basic Y2xpZW50' -H 'Proxy-Authorization: Basic cHJveHk='
[[ $(upstream_last path) == /user ]] || fail "the upstream saw path $(upstream_last path)"
[[ $(upstream_header authorization) == "Bearer tok-https-0" ]] ||
  fail "the upstream saw Authorization: $(upstream_header authorization)"
[[ -z $(upstream_header proxy-authorization) ]] || fail "Proxy-Authorization reached the upstream"
# mitmdump logs each flow after answering it, so this line may lag a little.
wait_for grep -q "GET https://127.0.0.1:$UP_PORT/user HTTP/2.0" "$EGP_LOG"

echo "# over HTTPS the credential also reaches an upstream that is not loopback"
if [[ -n $far ]]; then
  near_record=$UP_RECORD
  UP_RECORD=$far_record
  expect_code 200 "https://$far:$far_port/far/x" "${tls[@]}"
  [[ $(upstream_header authorization) == "Bearer tok-https-0" ]] ||
    fail "the upstream at $far saw Authorization: $(upstream_header authorization)"
  UP_RECORD=$near_record
else
  echo "# (skipped: this host has no address but loopback)"
fi

echo "# refused inside the tunnel: paths, dot segments, another Host or :authority"
expect_refused "$up/users" "${tls[@]}"
expect_refused "$up/user/%2e%2e/admin" "${tls[@]}"
expect_refused "$up/user" "${tls[@]}" -H "Host: localhost:$UP_PORT"
expect_refused "$up/user" "${tls[@]}" --http1.1 -H "Host: localhost:$UP_PORT"

echo "# refused: a CONNECT to a host without a route (nothing is intercepted for it)"
expect_refused "https://localhost:$UP_PORT/user" "${tls[@]}"

echo "# the client must trust mitmproxy's CA: without it the TLS handshake fails"
rc=0
curl -s -o /dev/null -x "http://127.0.0.1:$EGP_PORT" "$up/user" || rc=$?
((rc == 60)) || fail "curl without the proxy's CA exited $rc, expected 60 (certificate problem)"
echo ok
