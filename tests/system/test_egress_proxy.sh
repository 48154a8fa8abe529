#!/usr/bin/env bash
# The real data plane: the egress sidecar is mitmdump with contrib/egress's
# policy addon, started by its launcher, and `bottle-reconciler run`
# converges it (signal driver, the launcher's pidfile). The pipelock sidecar
# is the project's stand-in ($BR_SIDECAR): the real pipelock cannot be built
# here. An upstream on loopback records every request it receives, so each
# check sees both what the client was answered and what reached the upstream.
#
# Hosts: the addon matches the request's host exactly, and mitmproxy connects
# to that same host, so the routes name names that reach the upstream:
# 127.0.0.1 (the fragment validator, reconciler/model/fragment.c, accepts a
# dotted-quad IPv4 host) and localhost (resolved by mitmproxy). curl's
# --resolve and --connect-to would not help: through a proxy, curl hands the
# name to the proxy, which resolves it itself. Both are loopback, the one
# kind of upstream a credential goes to over plain http; an address of this
# host that is not loopback checks that plain http elsewhere gets none.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
source "$here/egress.sh"
egress_require
br_tmpdir
cfg=$BR_TMP/br.yaml
bottles_config "$cfg"
bottle_create alpha
run=$BR_TMP/state/alpha/run
status=$run/egress.status.json
live=$(eg_file alpha)

# The proxy reads its tokens from its own environment; the unset one must
# really be unset.
export EGRESS_TOKEN_0=tok-alpha-0
# One credential serves one host (the policy): the far host below has its own.
export EGRESS_TOKEN_1=tok-alpha-1
unset EGRESS_TOKEN_MISSING

start_upstream
up=http://127.0.0.1:$UP_PORT
start_sidecar pipelock "$(pl_file alpha)" "$(pl_log alpha)" "$run/pipelock.pid"
start_egress "$live" "$status" "$run/egress.pid"
proxy_pid=$EGP_PID
[[ $(<"$run/egress.pid") == "$proxy_pid" ]] || fail "the pidfile does not name mitmdump (exec keeps the launcher's pid)"

echo "# no routes file yet: everything is refused, and the status file says why"
[[ $(egress_status_field "$status" loads) == 0 ]] || fail "status before any load: $(cat "$status")"
[[ -n $(egress_status_field "$status" error) ]] || fail "status does not say why nothing is loaded: $(cat "$status")"
expect_refused "$up/user"
grep -q 'no route for host 127.0.0.1' "$BR_TMP/body" || fail "unexpected refusal: $(cat "$BR_TMP/body")"

echo "# a fragment appears: the daemon widens pipelock, then writes and reloads egress"
start_daemon "$cfg"
bottle_fragment alpha 10-acme.yaml <<'YAML'
routes:
  - host: 127.0.0.1
    path_allowlist: [/repos/acme/, /user]
    auth_scheme: Bearer
    token_env: EGRESS_TOKEN_0
YAML
# live_is WORD...: the live egress file holds every WORD and the proxy
# confirms (status file) that it runs exactly those bytes.
live_is() {
  local w
  for w in "$@"; do grep -q -- "$w" "$live" 2>/dev/null || return 1; done
  egress_loaded "$status" "$live"
}
wait_for live_is '"host": "127.0.0.1"' '"/repos/acme/"'
grep -q '^  - 127.0.0.1$' "$(pl_file alpha)" || fail "127.0.0.1 is not on pipelock's allowlist"
sidecar_settled "$(pl_log alpha)" "$(pl_file alpha)" || fail "egress loaded before pipelock did"
grep -q "^egress: loaded sha256=$(sha256_of "$live") routes=1 loads=" "$EGP_LOG" ||
  fail "no 'egress: loaded' line with the live file's hash in the proxy's log"

echo "# allowed: the credential comes from the proxy's environment, the client's is replaced"
# Two Authorization headers from the client: exactly one, the proxy's, goes on.
expect_code 200 "$up/user" -H 'Authorization: Basic Y2xpZW50' -H 'Authorization: token c2Vjb25k' \
  -H 'Proxy-Authorization: Basic cHJveHk='
[[ $(upstream_last path) == /user ]] || fail "the upstream saw path $(upstream_last path)"
[[ $(upstream_header authorization) == "Bearer tok-alpha-0" ]] ||
  fail "the upstream saw Authorization: $(upstream_header authorization)"
[[ -z $(upstream_header proxy-authorization) ]] || fail "Proxy-Authorization reached the upstream"
expect_code 200 "$up/user/emails"
expect_code 200 "$up/repos/acme/widgets/issues?state=open&q=/users/../x"
[[ $(upstream_last path) == "/repos/acme/widgets/issues?state=open&q=/users/../x" ]] ||
  fail "the query did not reach the upstream as sent: $(upstream_last path)"
[[ $(upstream_header authorization) == "Bearer tok-alpha-0" ]] || fail "no credential on the second path"

echo "# refused: outside the allowlist, not on a segment boundary, dot segments, encoded slashes"
expect_refused "$up/users"
expect_refused "$up/users?next=/user"
expect_refused "$up/repos/acme"
expect_refused "$up/repos/other/x"
expect_refused "$up/"
expect_refused "$up/repos/acme/../other/x"
expect_refused "$up/repos/acme/%2e%2e/other/x"
expect_refused "$up/repos/acme/.%2E/other/x"
expect_refused "$up/user/..;/admin"
expect_refused "$up/repos/acme/x%2fy"
expect_refused "$up/repos/acme/x%2Fy"
expect_refused "$up/repos/acme/x%5cy"
expect_refused "$up/repos/acme/%252e%252e/other"
echo "# refused: a CONNECT to a host without a route"
expect_refused "http://localhost:$UP_PORT/user" --proxytunnel

echo "# a keep-alive connection opened before a reload goes on working after it"
coproc CLIENT { "$EGRESS_PY" "$here/egress_client.py" "$EGP_PORT"; }
br_track "$CLIENT_PID"
# client_get URL [NAME VALUE]: one request on the client's connection; sets
# REPLY to its JSON answer.
client_get() {
  local headers="{}"
  [[ $# -lt 3 ]] || headers=$("$EGRESS_PY" -c 'import json, sys; print(json.dumps({sys.argv[1]: sys.argv[2]}))' "$2" "$3")
  printf '{"url": "%s", "headers": %s}\n' "$1" "$headers" >&"${CLIENT[1]}"
  read -r -t 30 REPLY <&"${CLIENT[0]}" || fail "the keep-alive client did not answer"
}
client_field() { "$EGRESS_PY" -c 'import json, sys; print(json.loads(sys.argv[1]).get(sys.argv[2], ""))' "$REPLY" "$1"; }
client_get "$up/user"
[[ $(client_field status) == 200 ]] || fail "keep-alive client, first request: $REPLY"
client_port=$(client_field local_port)

bottle_fragment alpha 11-acme-orgs.yaml <<'YAML'
routes:
  - host: 127.0.0.1
    path_allowlist: [/orgs/acme/]
    auth_scheme: Bearer
    token_env: EGRESS_TOKEN_0
YAML
# No path_allowlist: every path of the host. The daemon writes the route
# without one, and the proxy must read it so (not refuse the file).
bottle_fragment alpha 20-local.yaml <<'YAML'
routes:
  - host: localhost
YAML
wait_for live_is '"/orgs/acme/"' '"host": "localhost"'

client_get "$up/orgs/acme/members"
[[ $(client_field status) == 200 && $(client_field same_connection) == True ]] ||
  fail "keep-alive client after the reload: $REPLY"
[[ $(client_field local_port) == "$client_port" ]] || fail "the client's connection changed: $REPLY"
[[ $(upstream_header authorization) == "Bearer tok-alpha-0" ]] || fail "no credential after the reload"
client_get "http://localhost:$UP_PORT/anything"
[[ $(client_field status) == 200 && $(client_field same_connection) == True ]] ||
  fail "keep-alive client, the new route: $REPLY"

echo "# a route without auth: the client's Authorization passes, Proxy-Authorization does not"
expect_code 200 "http://localhost:$UP_PORT/simple/" -H 'Authorization: Basic Y2xpZW50' -H 'Proxy-Authorization: Basic cHJveHk='
[[ $(upstream_header authorization) == "Basic Y2xpZW50" ]] || fail "the client's own Authorization was changed"
[[ -z $(upstream_header proxy-authorization) ]] || fail "Proxy-Authorization reached the upstream"

echo "# a Host header that names another host is refused, even a host with a route"
expect_refused "$up/user" -H "Host: localhost:$UP_PORT"
expect_refused "$up/user" -H "Host: example.com"
expect_refused "http://localhost:$UP_PORT/x" -H "Host: 127.0.0.1:$UP_PORT"
expect_refused "$up/user" -H "Host: 127.0.0.1:1"

echo "# a route whose token variable is unset answers an error; nothing goes upstream"
bottle_fragment alpha 20-local.yaml <<'YAML'
routes:
  - host: localhost
    path_allowlist: [/]
    auth_scheme: token
    token_env: EGRESS_TOKEN_MISSING
YAML
wait_for live_is EGRESS_TOKEN_MISSING
before=$(upstream_count)
expect_code 502 "http://localhost:$UP_PORT/x" -H 'Authorization: Basic Y2xpZW50'
grep -q 'EGRESS_TOKEN_MISSING' "$BR_TMP/body" || fail "the error does not name the variable: $(cat "$BR_TMP/body")"
(($(upstream_count) == before)) || fail "sent without its credential: $(tail -n 1 "$UP_RECORD")"

echo "# plain http to an upstream that is not loopback: a credential route is refused, the token never sent"
far=$(host_address)
if [[ -n $far ]]; then
  near_port=$UP_PORT near_record=$UP_RECORD
  start_upstream --bind "$far"
  far_port=$UP_PORT
  bottle_fragment alpha 30-far.yaml <<YAML
routes:
  - host: $far
    path_allowlist: [/]
    auth_scheme: Bearer
    token_env: EGRESS_TOKEN_1
YAML
  wait_for live_is "\"host\": \"$far\""
  expect_refused "http://$far:$far_port/x" -H 'Authorization: Basic Y2xpZW50'
  grep -q "egress: refused: the credential for $far is sent over HTTPS only, not plain http" "$BR_TMP/body" ||
    fail "the refusal does not say why: $(cat "$BR_TMP/body")"
  (($(upstream_count) == 0)) || fail "the upstream at $far saw: $(cat "$UP_RECORD")"
  grep -q "egress: refused GET $far/x: the credential for $far is sent over HTTPS only" "$EGP_LOG" ||
    fail "the proxy did not log the refusal: $(tail -n 3 "$EGP_LOG")"
  rm "$BR_TMP/state/alpha/routes.d/30-far.yaml"
  without_far() { ! grep -q "\"host\": \"$far\"" "$live" && egress_loaded "$status" "$live"; }
  wait_for without_far
  UP_PORT=$near_port UP_RECORD=$near_record
else
  echo "# (skipped: this host has no address but loopback)"
fi

echo "# removed routes are refused again, also on the old keep-alive connection"
rm "$BR_TMP/state/alpha/routes.d/20-local.yaml" "$BR_TMP/state/alpha/routes.d/11-acme-orgs.yaml"
live_without() { ! grep -q -e localhost -e /orgs/ "$live" && egress_loaded "$status" "$live"; }
wait_for live_without
expect_refused "http://localhost:$UP_PORT/x"
expect_refused "$up/orgs/acme/members"
before=$(upstream_count)
client_get "$up/orgs/acme/members"
[[ $(client_field status) == 403 && $(client_field same_connection) == True ]] ||
  fail "keep-alive client, the removed path: $REPLY"
client_get "$up/user"
[[ $(client_field status) == 200 && $(client_field same_connection) == True ]] ||
  fail "keep-alive client, the path still routed: $REPLY"
(($(upstream_count) == before + 1)) || fail "the upstream saw $(($(upstream_count) - before)) requests, expected 1"
exec {CLIENT[1]}>&-
reap "$CLIENT_PID"

echo "# an invalid file on reload keeps the old table (the daemon is stopped, or it would repair it)"
stop_daemon
good=$BR_TMP/good-routes.json
cp "$live" "$good"
loads=$(egress_status_field "$status" loads)
sha=$(egress_status_field "$status" sha256)
# fails_with TEXT: the last reload was refused for a reason that contains TEXT.
fails_with() { [[ $(egress_status_field "$status" error) == *"$1"* ]]; }
# A key the addon does not know could be a restriction it would not apply.
write_atomic "$live" <<'JSON'
{"routes": [{"host": "127.0.0.1", "path_allowlist": ["/"], "methods": ["GET"]}]}
JSON
kill -HUP "$proxy_pid"
wait_for fails_with "unknown key 'methods'"
write_atomic "$live" <<'JSON'
{"routes": [{"host": "127.0.0.1", "path_allowlist": ["/"]}
JSON
kill -HUP "$proxy_pid"
wait_for fails_with "not JSON"
[[ $(egress_status_field "$status" loads) == "$loads" ]] || fail "loads changed on a refused reload: $(cat "$status")"
[[ $(egress_status_field "$status" sha256) == "$sha" ]] || fail "sha256 changed on a refused reload: $(cat "$status")"
expect_code 200 "$up/user"
expect_refused "$up/other"
write_atomic "$live" <"$good"
kill -HUP "$proxy_pid"
reloaded() { [[ $(egress_status_field "$status" loads) == $((loads + 1)) && -z $(egress_status_field "$status" error) ]]; }
wait_for reloaded
egress_loaded "$status" "$live" || fail "the restored file is not what the proxy runs: $(cat "$status")"

echo "# the proxy survived every reload"
pid_gone "$proxy_pid" && fail "the proxy died: $(tail -n 20 "$EGP_LOG")"
[[ $(egress_status_field "$status" pid) == "$proxy_pid" ]] || fail "the status file names another pid: $(cat "$status")"
(($(grep -c '^egress: loaded ' "$EGP_LOG") >= 5)) || fail "fewer loads than reloads: $(grep '^egress: ' "$EGP_LOG")"
echo ok
