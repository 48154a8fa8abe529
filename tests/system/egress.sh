# egress.sh: runs the real egress proxy (contrib/egress: mitmdump with the
# policy addon, through its launcher) and a recording upstream for the system
# tests; source it after lib.sh. Defines functions only.
# shellcheck shell=bash
#
#   egress_require                        fail (not skip) unless mitmdump and curl are installed; sets
#                                         EGRESS_PY, the python that runs mitmdump (stdlib and mitmproxy's
#                                         dependencies such as cryptography; started fast, unlike a pyenv
#                                         shim), which runs every python helper here
#   start_upstream [--tls CERT KEY] [--bind ADDR]
#                                         start egress_upstream.py on a free loopback port (or one of
#                                         ADDR), track it; sets UP_PID, UP_PORT and UP_RECORD (its
#                                         JSON-lines record); a second call replaces the first's values
#   host_address                          print an IPv4 address of this host that is not loopback ('' if none)
#   start_egress ROUTES STATUS PIDFILE [-- MITMDUMP-ARG...]
#                                         start contrib/egress/egress-proxy on 127.0.0.1, port 0, track it,
#                                         wait until it listens and its SIGHUP handler is in place;
#                                         sets EGP_PID, EGP_PORT and EGP_LOG ($BR_TMP/egress-proxy.N.log)
#   egress_status_field STATUS FIELD      print FIELD of the status file ('' when null or no file)
#   egress_loaded STATUS FILE             succeed once the status file's sha256 is the SHA-256 of FILE
#   via_proxy URL [CURL-ARG...]           curl URL through the proxy; prints the HTTP code, the body
#                                         goes to $BR_TMP/body (a CONNECT answer prints as its code)
#   expect_code CODE URL [CURL-ARG...]    via_proxy, fail unless it answers CODE
#   expect_refused URL [CURL-ARG...]      expect_code 403, and the upstream saw nothing new
#   upstream_count                        print how many requests reached the upstream
#   upstream_last FIELD                   print FIELD (method, path) of the last request the upstream saw
#   upstream_header NAME                  print each value of header NAME (any case) of that request, one a line

EGRESS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../contrib/egress" && pwd)
EGRESS_TESTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
EGRESS_RUNS=0

egress_require() {
  local tool line
  for tool in mitmdump curl; do
    command -v "$tool" >/dev/null 2>&1 ||
      fail "$tool is missing: these tests run the real egress proxy; contrib/setup.sh installs mitmproxy and curl"
  done
  read -r line <"$(command -v mitmdump)"
  EGRESS_PY=${line#\#!}
  [[ $line == '#!'* && -x $EGRESS_PY ]] || EGRESS_PY=python3
}

_egress_port_file_ready() { [[ -s $1 ]] || { pid_gone "$2" && fail "the upstream exited before it listened"; }; }

start_upstream() {
  UPSTREAM_RUNS=$((${UPSTREAM_RUNS:-0} + 1))
  # The first keeps the names it always had.
  local n=""
  ((UPSTREAM_RUNS == 1)) || n=$UPSTREAM_RUNS
  UP_RECORD=$BR_TMP/upstream$n.jsonl
  : >"$UP_RECORD"
  rm -f "$BR_TMP/upstream$n.port"
  "$EGRESS_PY" "$EGRESS_TESTS/egress_upstream.py" --record "$UP_RECORD" --port-file "$BR_TMP/upstream$n.port" "$@" &
  UP_PID=$!
  br_track "$UP_PID"
  wait_for _egress_port_file_ready "$BR_TMP/upstream$n.port" "$UP_PID"
  UP_PORT=$(<"$BR_TMP/upstream$n.port")
}

host_address() {
  ip -4 -o addr show scope global 2>/dev/null | awk '{ sub(/\/.*/, "", $4); print $4; exit }'
}

# Ready: listening (mitmdump logs the port it bound, so port 0 picks a free
# one without a race) and the addon's running hook has installed the SIGHUP
# handler (the addon logs that; until then SIGHUP is only ignored).
_egress_ready() {
  if pid_gone "$EGP_PID"; then
    fail "the egress proxy exited during start-up; its log:
$(cat "$EGP_LOG")"
  fi
  grep -q '^egress: SIGHUP reloads ' "$EGP_LOG" || return 1
  EGP_PORT=$(sed -n 's/^Proxy server listening at .*:\([0-9][0-9]*\)$/\1/p' "$EGP_LOG" | head -n 1)
  [[ -n $EGP_PORT ]]
}

start_egress() {
  local routes=$1 status=$2 pidfile=$3
  shift 3
  [[ ${1:-} != -- ]] || shift
  EGRESS_RUNS=$((EGRESS_RUNS + 1))
  EGP_LOG=$BR_TMP/egress-proxy.$EGRESS_RUNS.log
  "$EGRESS_DIR/egress-proxy" --routes "$routes" --listen 127.0.0.1:0 --status "$status" \
    --pidfile "$pidfile" --confdir "$BR_TMP/mitmproxy" -- "$@" >"$EGP_LOG" 2>&1 &
  EGP_PID=$!
  br_track "$EGP_PID"
  wait_for -t "${BR_READY_S:-30}" _egress_ready
}

egress_status_field() {
  [[ -e $1 ]] || return 0
  "$EGRESS_PY" -c '
import json, sys
v = json.load(open(sys.argv[1])).get(sys.argv[2])
print("" if v is None else v)' "$1" "$2"
}

egress_loaded() {
  [[ -e $2 && $(egress_status_field "$1" sha256) == "$(sha256_of "$2")" ]]
}

via_proxy() {
  local url=$1
  shift
  # --path-as-is: curl would otherwise resolve "/../" itself and the proxy
  # would never see it. -w http_connect: a refused CONNECT has no http_code.
  curl -s --path-as-is -o "$BR_TMP/body" -w '%{http_code} %{http_connect}' \
    -x "http://127.0.0.1:$EGP_PORT" "$@" "$url" >"$BR_TMP/codes" || true
  local code connect
  read -r code connect <"$BR_TMP/codes"
  if [[ $code == 000 && $connect != 000 ]]; then
    echo "$connect"
  else
    echo "$code"
  fi
}

expect_code() {
  local want=$1 got
  shift
  got=$(via_proxy "$@")
  [[ $got == "$want" ]] || fail "$* answered $got, expected $want: $(cat "$BR_TMP/body" 2>/dev/null)
the proxy's log ends:
$(tail -n 5 "$EGP_LOG")"
}

expect_refused() {
  local before
  before=$(upstream_count)
  expect_code 403 "$@"
  grep -q '^egress: refused: ' "$BR_TMP/body" || [[ ! -s $BR_TMP/body ]] ||
    fail "$1: a 403 that is not the proxy's: $(cat "$BR_TMP/body")"
  (($(upstream_count) == before)) || fail "$1: refused, yet the upstream saw: $(tail -n 1 "$UP_RECORD")"
}

upstream_count() {
  wc -l <"$UP_RECORD"
}

_egress_last_py() {
  tail -n 1 "$UP_RECORD" | "$EGRESS_PY" -c "
import json, sys
seen = json.loads(sys.stdin.read() or 'null') or {'headers': []}
$1" "${@:2}"
}

upstream_last() {
  _egress_last_py 'print(seen.get(sys.argv[1], ""))' "$1"
}

upstream_header() {
  _egress_last_py '
for k, v in seen["headers"]:
    if k.lower() == sys.argv[1].lower():
        print(v)' "$1"
}
