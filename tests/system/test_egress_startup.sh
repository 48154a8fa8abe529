#!/usr/bin/env bash
# The real egress proxy (contrib/egress) around its start: SIGHUPs sent from
# the moment its pidfile names it are harmless (mitmdump dies of one until
# the addon's handler is in place; the launcher ignores them until then), a
# change asked for during start-up is live once it is ready, without a
# further signal, and a start with a missing or invalid routes file denies
# everything until a valid one is loaded. No daemon here: the signals are
# sent by hand, at the worst moments.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/egress.sh"
egress_require
br_tmpdir
mkdir "$BR_TMP/egress"
routes=$BR_TMP/egress/egress_routes.yaml
status=$BR_TMP/egress.status.json
pidfile=$BR_TMP/egress.pid

start_upstream
up=http://127.0.0.1:$UP_PORT
write_atomic "$routes" <<'JSON'
{
  "routes": [
    {
      "host": "127.0.0.1",
      "path_allowlist": [
        "/v1/"
      ]
    }
  ]
}
JSON
v1=$(sha256_of "$routes")

echo "# SIGHUP from the first moment the pidfile names the proxy until it is ready"
EGRESS_RUNS=$((EGRESS_RUNS + 1))
EGP_LOG=$BR_TMP/egress-proxy.$EGRESS_RUNS.log
"$EGRESS_DIR/egress-proxy" --routes "$routes" --listen 127.0.0.1:0 --status "$status" \
  --pidfile "$pidfile" --confdir "$BR_TMP/mitmproxy" >"$EGP_LOG" 2>&1 &
EGP_PID=$!
br_track "$EGP_PID"
pidfile_names_proxy() { [[ -e $pidfile && $(<"$pidfile") == "$EGP_PID" ]]; }
wait_for pidfile_names_proxy
hups=0 early=0 changed=false
# SIGHUP is ignored (the launcher's trap) and not yet caught (the addon's handler).
hup_only_ignored() { _br_sigmask_has_hup "$1" SigIgn && ! _br_sigmask_has_hup "$1" SigCgt; }
# hup_until_ready: one SIGHUP per call, and once the proxy has loaded v1
# (at configure, before it listens or has a handler), a change to v2 and
# then no more signals. Success once the proxy is ready.
hup_until_ready() {
  if ! $changed; then
    ! hup_only_ignored "$EGP_PID" || early=$((early + 1))
    kill -HUP "$EGP_PID" 2>/dev/null || true
    hups=$((hups + 1))
    if [[ $(egress_status_field "$status" sha256) == "$v1" ]]; then
      write_atomic "$routes" <<'JSON'
{
  "routes": [
    {
      "host": "127.0.0.1",
      "path_allowlist": [
        "/v2/"
      ]
    }
  ]
}
JSON
      kill -HUP "$EGP_PID" 2>/dev/null || true
      hups=$((hups + 1))
      changed=true
    fi
  fi
  _egress_ready
}
wait_for -t "${BR_READY_S:-30}" hup_until_ready
$changed || fail "the proxy was ready before the status file showed its first load"
echo "sent $hups SIGHUPs during start-up, $early of them before the addon's handler was in place"
((early >= 1)) || fail "no SIGHUP was sent before the addon's handler was in place"
_br_sigmask_has_hup "$EGP_PID" SigCgt || fail "the ready proxy does not catch SIGHUP"
# The change is live without a signal after the proxy was ready: the addon
# installs its handler before its first read, so a SIGHUP is either ignored
# before a read that sees the change, or handled after it.
wait_for egress_loaded "$status" "$routes"
pid_gone "$EGP_PID" && fail "a SIGHUP during start-up killed the proxy: $(cat "$EGP_LOG")"
expect_code 200 "$up/v2/x"
expect_refused "$up/v1/x"
echo "# and it still reloads"
loads=$(egress_status_field "$status" loads)
write_atomic "$routes" <<'JSON'
{"routes": [{"host": "127.0.0.1", "path_allowlist": ["/v3/"]}], "comment": "other top-level keys are kept"}
JSON
kill -HUP "$EGP_PID"
wait_for egress_loaded "$status" "$routes"
# More than one reload may have come: a start-up SIGHUP can be handled after
# the change it was not sent for. Confirmed by hash, as a reconciler does.
(($(egress_status_field "$status" loads) > loads)) || fail "a reload, yet loads went $loads -> $(cat "$status")"
expect_code 200 "$up/v3/x"
kill -TERM "$EGP_PID"
reap "$EGP_PID"
((REAP_STATUS == 0)) || fail "mitmdump exited $REAP_STATUS after SIGTERM"

echo "# a start without a routes file denies everything, and says why"
rm "$routes" "$status"
start_egress "$routes" "$status" "$pidfile"
[[ $(egress_status_field "$status" loads) == 0 && -z $(egress_status_field "$status" sha256) ]] ||
  fail "status after a start without a file: $(cat "$status")"
[[ $(egress_status_field "$status" error) == *"No such file"* ]] || fail "status error: $(cat "$status")"
expect_refused "$up/v3/x"
kill -TERM "$EGP_PID"
reap "$EGP_PID"

echo "# a start with an invalid routes file denies everything, even what that file would allow"
# Half an auth pair: the route would go out without its credential.
write_atomic "$routes" <<'JSON'
{"routes": [{"host": "127.0.0.1", "path_allowlist": ["/"], "auth_scheme": "Bearer"}]}
JSON
start_egress "$routes" "$status" "$pidfile"
[[ $(egress_status_field "$status" error) == *"auth_scheme and token_env"* ]] || fail "status error: $(cat "$status")"
expect_refused "$up/v3/x"
write_atomic "$routes" <<'JSON'
{"routes": [{"host": "127.0.0.1", "path_allowlist": ["/"]}]}
JSON
kill -HUP "$EGP_PID"
wait_for egress_loaded "$status" "$routes"
[[ $(egress_status_field "$status" loads) == 1 && -z $(egress_status_field "$status" error) ]] ||
  fail "status after the fix: $(cat "$status")"
expect_code 200 "$up/v3/x"
grep -q "^egress: loaded sha256=$(sha256_of "$routes") routes=1 loads=1$" "$EGP_LOG" ||
  fail "no confirmation line in the log: $(grep '^egress' "$EGP_LOG")"
echo ok
