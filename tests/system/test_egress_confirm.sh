#!/usr/bin/env bash
# The real egress proxy (contrib/egress) confirms its reloads through its
# status file (issue 14, "confirmed, not assumed"): the signal driver, with
# `expect` naming mitmdump of this bottle and `confirm: {status_file}`,
# counts a reload only once the proxy's status file names the SHA-256 of the
# bytes just written.
# * A new route: converged, confirmed (the audit says so), and served.
# * A file the proxy refuses: another tool left a top-level key in the live
#   file that the daemon keeps (as it keeps every key it does not own) but
#   that nests deeper than Python's json reads. The proxy keeps its old table
#   and says why; the bottle retries, and status names both hashes and the
#   proxy's error. Without the key, the bottle converges.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
source "$here/egress.sh"
egress_require
br_tmpdir
cfg=$BR_TMP/br.yaml
bottles_config "$cfg" <<'YAML'
backoff: {initial_ms: 20, max_ms: 300}
egress:
  reload:
    driver: signal
    pidfile: "{state_dir}/{slug}/run/egress.pid"
    grace_ms: 0
    expect: {comm: mitmdump, cmdline_contains: "egress_routes={state_dir}/{slug}/egress/"}
    confirm: {status_file: "{state_dir}/{slug}/run/egress.status.json", timeout_ms: 1000}
YAML
bottle_create alpha
run=$BR_TMP/state/alpha/run
status=$run/egress.status.json
live=$(eg_file alpha)
audit=$BR_TMP/state/.reconciler/audit.jsonl
start_upstream
up=http://127.0.0.1:$UP_PORT
start_sidecar pipelock "$(pl_file alpha)" "$(pl_log alpha)" "$run/pipelock.pid"
start_egress "$live" "$status" "$run/egress.pid"
proxy_pid=$EGP_PID
start_daemon "$cfg"

echo "# a new route: the proxy confirms the bytes, the bottle converges"
bottle_fragment alpha 10-up.yaml <<'YAML'
routes:
  - {host: 127.0.0.1, path_allowlist: [/ok/]}
YAML
wait_for grep -q '"/ok/"' "$live"
wait_for slug_converged alpha
egress_loaded "$status" "$live" || fail "converged, but the proxy does not run the live file: $(cat "$status")"
tail -n 1 "$audit" | grep -q "\"reload_detail\":\"sent SIGHUP to pid $proxy_pid; egress confirmed sha256 $(sha256_of "$live" | cut -c1-12)" ||
  fail "the audit does not show a confirmed reload: $(tail -n 1 "$audit")"
expect_code 200 "$up/ok/x"

echo "# a file the proxy refuses: retrying, with both hashes and the proxy's reason"
good_sha=$(sha256_of "$live")
# 1100 nested lists: jansson (the daemon) reads up to 2048, Python's json
# stops at its recursion limit of 1000.
"$EGRESS_PY" - "$live" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
doc["other_tool"] = "@"
text = json.dumps(doc, indent=2).replace('"@"', "[" * 1100 + "]" * 1100)
open(sys.argv[1] + ".new", "w").write(text + "\n")
PY
mv "$live.new" "$live"
bottle_fragment alpha 10-up.yaml <<'YAML'
routes:
  - {host: 127.0.0.1, path_allowlist: [/ok/, /more/]}
YAML
wait_for grep -q '"/more/"' "$live"
grep -q '"other_tool"' "$live" || fail "the daemon dropped the other tool's key"
new_sha=$(sha256_of "$live")
unconfirmed() {
  [[ $(status_field alpha phase) == @(retrying|converging) &&
    $(status_field alpha message) == *"egress reload failed: sent SIGHUP to pid $proxy_pid, but egress did not confirm sha256 $new_sha within 1000 ms; it reports sha256 $good_sha in $status; its last load failed: "*"nested too deeply"* ]]
}
wait_for unconfirmed
attempts_gt() {
  local a
  a=$(status_field alpha attempts)
  ((${a:-0} > $1))
}
# Each attempt waits out the 1 s confirm timeout.
wait_for -t 30 attempts_gt "$(($(status_field alpha attempts) + 1))"
unconfirmed || fail "no longer retrying: $(daemon_status alpha)"
# The proxy kept its table: the new path is refused, the old one served.
expect_refused "$up/more/x"
expect_code 200 "$up/ok/x"

echo "# the key removed: the proxy loads the file, the bottle converges"
"$EGRESS_PY" - "$live" <<'PY'
import json, sys
sys.setrecursionlimit(100000)
doc = json.load(open(sys.argv[1]))
del doc["other_tool"]
open(sys.argv[1] + ".new", "w").write(json.dumps(doc, indent=2) + "\n")
PY
mv "$live.new" "$live"
wait_for slug_converged alpha
egress_loaded "$status" "$live" || fail "converged, but the proxy does not run the live file: $(cat "$status")"
expect_code 200 "$up/more/x"
stop_daemon
echo ok
