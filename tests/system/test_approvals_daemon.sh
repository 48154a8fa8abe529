#!/usr/bin/env bash
# System tests of add-route --wait while the daemon runs (the daemon answers
# the wait when its converge finishes), judged by the sidecars' logs, the
# live files and `status`: live (exit 0, well before the deadline); refused
# by egress's validate (exit 1, the approval taken out, the daemon converges
# back to the old hash, pipelock untouched); egress dead (exit 3 within the
# wait, the daemon keeps retrying and converges once egress is back).
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
source "$here/approvals.sh"
use_fast_python
cfg=$BR_TMP/br.yaml
# Refuses forbidden.example.com; slow-forbidden.example.com too, after 2 s.
cat >"$BR_TMP/refuse.sh" <<'SH'
#!/bin/sh
grep -q '"host": "slow-forbidden.example.com"' "$1" && sleep 2
grep -q forbidden.example.com "$1" && { echo "policy: forbidden.example.com is not allowed"; exit 3; }
exit 0
SH
chmod +x "$BR_TMP/refuse.sh"
bottles_config "$cfg" <<YAML
backoff: {initial_ms: 20, max_ms: 200}
egress:
  validate: ["$BR_TMP/refuse.sh", "{file}"]
  reload: {driver: signal, pidfile: "{state_dir}/{slug}/run/egress.pid", grace_ms: 0}
YAML
br() { "$BR_BIN" --config "$cfg" "$@"; }
state=$BR_TMP/state
d=$state/dd/routes.d
phase_is() { [[ $(status_field dd phase) == "$1" ]]; }

bottle_create dd
bottle_start dd
start_daemon "$cfg"
wait_for slug_converged dd
wait_for sidecar_settled "$(eg_log dd)" "$(eg_file dd)"
wait_for sidecar_settled "$(pl_log dd)" "$(pl_file dd)"

# --- live: answered by the daemon's converge, well before the deadline -------
brx add-route dd --host ok.example.com --path /x --id ok --wait=30 --json
echo "add-route --wait=30 with the daemon: rc $RC after $MS ms"
((RC == 0)) || fail "add-route --wait with the daemon: rc $RC: $(outerr)"
((MS < 30000)) || fail "add-route --wait=30 returned only at its deadline ($MS ms)"
json_assert "$BR_TMP/out" '
assert d["outcome"] == "live" and d["error"] is None, d
assert {"host": "ok.example.com", "path_allowlist": ["/x"]} in d["egress_after"]["routes"], d["egress_after"]
assert "ok.example.com" in d["pipelock_after"], d["pipelock_after"]
' || fail "add-route --wait --json with the daemon: $(outerr)"
want=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["desired_hash"])' "$BR_TMP/out")
slug_converged dd "$want" || fail "the daemon does not report the approval's desired hash: $(daemon_status dd)"
grep -q '"host": "ok.example.com"' "$(eg_file dd)" || fail "egress file without the approved host"
grep -q '^  - ok.example.com$' "$(pl_file dd)" || fail "pipelock does not allow the approved host"
sidecar_has "$(pl_log dd)" '' "$(sha256_of "$(pl_file dd)")" ok || fail "pipelock had not loaded its new file when --wait returned"
wait_for -t 5 sidecar_has "$(eg_log dd)" reload "$(sha256_of "$(eg_file dd)")" ok
# The daemon converged it, not the command.
daemon_log_has '^  egress: \+ host ok\.example\.com' || fail "the daemon's log does not show the converge: $(tail -n 5 "$DAEMON_LOG")"

# A change that is live already (the same route again) is live at once.
brx add-route dd --host ok.example.com --path /x --id again --wait=30
((RC == 0)) && grep -q '^dd: live' "$BR_TMP/out" || fail "an approval that changes nothing: rc $RC: $(outerr)"

# --- refused by egress's validate: taken out; the daemon converges back -------
wait_for slug_converged dd
wait_for sidecar_settled "$(eg_log dd)" "$(eg_file dd)"
wait_for sidecar_quiet "${PL_PID[dd]}"
old_hash=$(status_field dd desired_hash)
pl_hash=$(sha256_of "$(pl_file dd)")
eg_hash=$(sha256_of "$(eg_file dd)")
pl_lines=$(sidecar_count "$(pl_log dd)")
eg_lines=$(sidecar_count "$(eg_log dd)")
before=$(tree_sum "$d")
brx add-route dd --host forbidden.example.com --path /x --id bad --wait=30
echo "refused add-route --wait=30 with the daemon: rc $RC after $MS ms"
((RC == 1)) || fail "add-route --wait of a refused host with the daemon: rc $RC: $(outerr)"
((MS < 30000)) || fail "a refused add-route --wait=30 returned only at its deadline"
grep -q '^dd: refused' "$BR_TMP/out" && grep -q 'policy: forbidden.example.com is not allowed' "$BR_TMP/err" ||
  fail "the refusal does not say why: $(outerr)"
[[ ! -e $d/~approval-bad.json && $(tree_sum "$d") == "$before" ]] || fail "the refused approval is still installed"
wait_for slug_converged dd "$old_hash"
[[ $(sidecar_live_hash "$(eg_log dd)") == "$eg_hash" ]] || fail "egress does not run the old file"
file_is "$(eg_file dd)" "$eg_hash" || fail "egress's file changed for a refused change"
file_is "$(pl_file dd)" "$pl_hash" || fail "pipelock's file changed for a refused change: $(cat "$(pl_file dd)")"
wait_for sidecar_quiet "${PL_PID[dd]}"
[[ $(sidecar_count "$(pl_log dd)") == "$pl_lines" ]] || fail "pipelock loaded something for a refused change"
[[ $(sidecar_count "$(eg_log dd)") == "$eg_lines" ]] || fail "egress loaded something for a refused change"

# --- egress dead: not live within the wait; the daemon keeps retrying ----------
stop_sidecar "${EG_PID[dd]}"
brx add-route dd --host dead.example.com --path /x --id dead --wait=3
echo "add-route --wait=3 with egress dead: rc $RC after $MS ms"
((RC == 3)) || fail "add-route --wait=3 with egress dead: rc $RC: $(outerr)"
grep -q '^dd: not-live' "$BR_TMP/out" || fail "not reported not-live: $(outerr)"
# The daemon's answer at the deadline, not the command giving up on it (the
# phase is retrying, or converging when the deadline falls on a retry).
grep -Eq 'not live after 3 s: (retrying|converging): egress reload failed: sidecar not running' "$BR_TMP/err" &&
  grep -q 'the daemon keeps retrying' "$BR_TMP/err" || fail "not-live does not say why: $(outerr)"
[[ -e $d/~approval-dead.json ]] || fail "a change that is not live yet was taken out"
wait_for phase_is retrying
a1=$(status_field dd attempts)
attempts_above() { local a; a=$(status_field dd attempts); [[ ${a:-0} -gt $1 ]]; }
wait_for attempts_above "$a1"
# Egress back: the daemon's next try makes it live.
start_sidecar egress "$(eg_file dd)" "$(eg_log dd)" "$state/dd/run/egress.pid"
EG_PID[dd]=$SIDECAR_PID
wait_for slug_converged dd
grep -q '"host": "dead.example.com"' "$(eg_file dd)" || fail "the egress file was not written"
wait_for sidecar_settled "$(eg_log dd)" "$(eg_file dd)"

# --- a wait whose change goes live together with a later one ------------------
# Approval "first" waits while egress is down; approval "second" is made
# meanwhile; egress comes back and the daemon converges both at once.
stop_sidecar "${EG_PID[dd]}"
(
  rc=0
  br add-route dd --host first.example.com --path / --id first --wait=6 >"$BR_TMP/first.out" 2>&1 || rc=$?
  echo "$rc" >"$BR_TMP/first.rc"
) &
first=$!
br_track "$first"
wait_for test -e "$d/~approval-first.json"
wait_for phase_is retrying
brx add-route dd --host second.example.com --path / --id second
((RC == 0)) || fail "add-route second: rc $RC: $(outerr)"
start_sidecar egress "$(eg_file dd)" "$(eg_log dd)" "$state/dd/run/egress.pid"
EG_PID[dd]=$SIDECAR_PID
wait_for slug_converged dd
wait_for sidecar_settled "$(eg_log dd)" "$(eg_file dd)"
grep -q '"host": "first.example.com"' "$(eg_file dd)" || fail "the first approval is not in the egress file"
reap "$first"
first_rc=$(cat "$BR_TMP/first.rc")
echo "add-route first --wait=6, live together with a later approval: rc $first_rc"
# An approval that goes live together with a later one is live: a converge
# handed out after the wait began read it, whatever else came with it.
((first_rc == 0)) || fail "an approval that went live with a later one: rc $first_rc: $(cat "$BR_TMP/first.out")"

# --- a refused change is taken out; a change made meanwhile stays --------------
# Approval "slow" is refused; while its command waits for the daemon's
# answer (held stopped, so that the order is sure), approval "kept" is made
# and reported installed. Taking "slow" out must not take "kept" with it.
wait_for slug_converged dd
"$BR_BIN" --config "$cfg" add-route dd --host slow-forbidden.example.com --path / --id slow --wait=20 \
  >"$BR_TMP/slow.out" 2>&1 &
slow=$!
br_track "$slow"
in_poll() { [[ $(cat "/proc/$1/wchan" 2>/dev/null) == *poll* ]]; }
wait_for test -e "$d/~approval-slow.json"
wait_for in_poll "$slow" # waiting for the daemon's answer, holding no lock
kill -STOP "$slow"
wait_for phase_is invalid
brx add-route dd --host kept.example.com --path / --id kept
((RC == 0)) || fail "add-route kept: rc $RC: $(outerr)"
kill -CONT "$slow"
reap "$slow"
((REAP_STATUS == 1)) || fail "the slow refused add-route: rc $REAP_STATUS: $(cat "$BR_TMP/slow.out")"
[[ ! -e $d/~approval-slow.json ]] || fail "the refused approval is still installed"
# The rollback takes out only what the refused command installed: a change
# another command made meanwhile stays.
[[ -e $d/~approval-kept.json ]] ||
  fail "the rollback of a refused approval removed ~approval-kept.json, made meanwhile by another add-route"

stop_daemon
echo ok
