#!/usr/bin/env bash
# The real egress proxy (contrib/egress) and its addon file: mitmproxy
# re-imports a script whose mtime changes, and a broken edit would leave the
# proxy running with no policy at all. The launcher refuses an addon that
# others may write; a valid re-import keeps the policy (and SIGHUP) working;
# a broken one makes the proxy exit (status 1) instead of passing requests.
# Runs a copy of the addon, which this test may edit.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/egress.sh"
egress_require
br_tmpdir
mkdir "$BR_TMP/addon" "$BR_TMP/egress"
export EGRESS_ADDON=$BR_TMP/addon/egress_addon.py
cp "$EGRESS_DIR/egress_addon.py" "$EGRESS_ADDON"
routes=$BR_TMP/egress/egress_routes.yaml
status=$BR_TMP/egress.status.json
printf '{"routes": [{"host": "127.0.0.1", "path_allowlist": ["/ok/"]}]}\n' >"$routes"
start_upstream
up=http://127.0.0.1:$UP_PORT

echo "# the launcher refuses an addon that group or others may write"
for mode in 664 646; do
  chmod "$mode" "$EGRESS_ADDON"
  rc=0
  "$EGRESS_DIR/egress-proxy" --routes "$routes" --listen 127.0.0.1:0 2>"$BR_TMP/launch.err" || rc=$?
  ((rc == 1)) || fail "the launcher started with an addon of mode $mode (exit $rc)"
  grep -q 'writable by group or others' "$BR_TMP/launch.err" || fail "message: $(cat "$BR_TMP/launch.err")"
done
chmod 644 "$EGRESS_ADDON"

start_egress "$routes" "$status" "$BR_TMP/egress.pid"
expect_code 200 "$up/ok/x"
expect_refused "$up/other"

echo "# a valid re-import (new mtime): the new instance enforces and reloads"
handlers() { grep -c '^egress: SIGHUP reloads ' "$EGP_LOG" || true; }
handlers_are() { (($(handlers) == $1)); }
# One second ahead: mitmproxy compares mtimes with its last look, once a second.
touch -d '+1 second' "$EGRESS_ADDON"
wait_for handlers_are 2
expect_code 200 "$up/ok/x"
expect_refused "$up/other"
printf '{"routes": [{"host": "127.0.0.1", "path_allowlist": ["/other"]}]}\n' >"$routes"
kill -HUP "$EGP_PID"
wait_for egress_loaded "$status" "$routes"
expect_code 200 "$up/other"
expect_refused "$up/ok/x"

echo "# a broken edit: the proxy exits rather than run without its policy"
echo 'this is not python (' >>"$EGRESS_ADDON"
touch -d '+2 seconds' "$EGRESS_ADDON"
wait_for pid_gone "$EGP_PID"
reap "$EGP_PID"
((REAP_STATUS == 1)) || fail "the proxy exited $REAP_STATUS, expected 1"
grep -q '^egress: the policy addon was unloaded' "$EGP_LOG" || fail "no reason in the log: $(tail -n 5 "$EGP_LOG")"
before=$(upstream_count)
[[ $(via_proxy "$up/other") == 000 ]] || fail "something still answers on the proxy's port"
(($(upstream_count) == before)) || fail "a request reached the upstream"

echo "# and a start with a broken addon fails"
rc=0
timeout 60 "$EGRESS_DIR/egress-proxy" --routes "$routes" --listen 127.0.0.1:0 >"$BR_TMP/broken.log" 2>&1 || rc=$?
((rc == 1)) || fail "mitmdump with a broken addon exited $rc: $(cat "$BR_TMP/broken.log")"
grep -q 'does not load; not starting' "$BR_TMP/broken.log" || fail "no reason given: $(cat "$BR_TMP/broken.log")"
# mitmdump itself would listen for a moment, with no policy, before exiting.
! grep -q 'listening' "$BR_TMP/broken.log" || fail "the broken proxy listened: $(cat "$BR_TMP/broken.log")"
echo ok
