#!/usr/bin/env bash
# System tests of add-route --wait with no daemon running (the command
# converges the bottle itself), judged by the sidecars' logs and the live
# files: live (exit 0, both sidecars loaded the new files); refused by
# egress's validate command (exit 1, the approval taken out again, pipelock
# byte-identical and not reloaded); not live because egress is down, its
# pidfile removed or left behind (exit 3, saying why); the wait's deadline.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
br_tmpdir
source "$here/approvals.sh"
use_fast_python
cfg=$BR_TMP/br.yaml
cat >"$BR_TMP/refuse.sh" <<'SH'
#!/bin/sh
grep -q forbidden.example.com "$1" && { echo "policy: forbidden.example.com is not allowed"; exit 3; }
exit 0
SH
chmod +x "$BR_TMP/refuse.sh"
bottles_config "$cfg" <<YAML
egress:
  validate: ["$BR_TMP/refuse.sh", "{file}"]
  reload: {driver: signal, pidfile: "{state_dir}/{slug}/run/egress.pid", grace_ms: 0}
YAML
br() { "$BR_BIN" --config "$cfg" "$@"; }
state=$BR_TMP/state
[[ ! -e $state/.reconciler/control.sock ]] || fail "a control socket exists: no daemon may run here"

bottle_create w
bottle_start w
brx once w
((RC == 0)) || fail "once w: rc $RC: $(outerr)"
wait_for sidecar_has "$(eg_log w)" reload "$(sha256_of "$(eg_file w)")" ok
d=$state/w/routes.d

# --- live: exit 0 once both sidecars run the new files -----------------------
pl_before=$(sha256_of "$(pl_file w)")
brx add-route w --host ok.example.com --path /x --id ok --wait --json
((RC == 0)) || fail "add-route --wait: rc $RC: $(outerr)"
json_assert "$BR_TMP/out" '
assert d["outcome"] == "live" and d["error"] is None, d
assert {"host": "ok.example.com", "path_allowlist": ["/x"]} in d["egress_after"]["routes"], d["egress_after"]
assert "ok.example.com" not in d["pipelock_before"] and "ok.example.com" in d["pipelock_after"], d
' || fail "add-route --wait --json: $(outerr)"
pl_new=$(sha256_of "$(pl_file w)")
eg_new=$(sha256_of "$(eg_file w)")
[[ $pl_new != "$pl_before" ]] && grep -q '^  - ok.example.com$' "$(pl_file w)" || fail "pipelock was not widened"
grep -q '"host": "ok.example.com"' "$(eg_file w)" || fail "egress file without the approved host"
# Pipelock was reloaded and given its settle time before egress was written:
# its log shows the load by the time the command returns.
sidecar_has "$(pl_log w)" '' "$pl_new" ok || fail "pipelock had not loaded its new file when --wait returned"
# "Live" is "both sidecars told": the signal may still be on its way.
wait_for -t 5 sidecar_has "$(eg_log w)" reload "$eg_new" ok
[[ $(sidecar_live_hash "$(eg_log w)") == "$eg_new" ]] || fail "egress does not run the new file"

# --- refused by egress's validate: taken out again, pipelock untouched -------
wait_for sidecar_quiet "${PL_PID[w]}"
pl_hash=$(sha256_of "$(pl_file w)")
eg_hash=$(sha256_of "$(eg_file w)")
pl_lines=$(sidecar_count "$(pl_log w)")
eg_lines=$(sidecar_count "$(eg_log w)")
before=$(tree_sum "$d")
brx add-route w --host forbidden.example.com --path /x --id bad --wait
((RC == 1)) || fail "add-route --wait of a host validate refuses: rc $RC: $(outerr)"
grep -q "^w: refused" "$BR_TMP/out" || fail "not reported refused: $(outerr)"
grep -q 'refused the new file (exit 3: policy: forbidden.example.com is not allowed)' "$BR_TMP/err" ||
  fail "the refusal does not say why: $(outerr)"
[[ ! -e $d/~approval-bad.json ]] || fail "the refused approval is still installed"
[[ $(tree_sum "$d") == "$before" ]] || fail "the fragments are not as before the refused change"
file_is "$(pl_file w)" "$pl_hash" || fail "pipelock's file changed for a refused change: $(cat "$(pl_file w)")"
file_is "$(eg_file w)" "$eg_hash" || fail "egress's file changed for a refused change"
[[ $(sidecar_count "$(pl_log w)") == "$pl_lines" ]] || fail "pipelock loaded something for a refused change: $(sidecar_last "$(pl_log w)")"
[[ $(sidecar_count "$(eg_log w)") == "$eg_lines" ]] || fail "egress loaded something for a refused change"
brx plan w
((RC == 0)) || fail "after the refused change the bottle has changes pending: rc $RC: $(outerr)"

# --- not live: egress stopped, its pidfile removed ---------------------------
stop_sidecar "${EG_PID[w]}"
[[ ! -e $state/w/run/egress.pid ]] || fail "a stopped sidecar left its pidfile"
brx add-route w --host dead.example.com --path /x --id dead --wait=5
((RC == 3)) || fail "add-route --wait=5 with egress stopped: rc $RC: $(outerr)"
grep -q '^w: not-live' "$BR_TMP/out" || fail "not reported not-live: $(outerr)"
grep -q "egress reload failed: sidecar not running: no pidfile $state/w/run/egress.pid" "$BR_TMP/err" ||
  fail "not-live does not say why: $(outerr)"
[[ -e $d/~approval-dead.json ]] || fail "a change that is not live yet was taken out"
grep -q '"host": "dead.example.com"' "$(eg_file w)" || fail "the egress file was not written"

# --- not live: egress killed, its pidfile left behind ------------------------
start_sidecar egress "$(eg_file w)" "$(eg_log w)" "$state/w/run/egress.pid"
EG_PID[w]=$SIDECAR_PID
kill -KILL "${EG_PID[w]}"
reap "${EG_PID[w]}"
[[ -e $state/w/run/egress.pid ]] || fail "a SIGKILLed sidecar removed its pidfile"
brx add-route w --host dead2.example.com --path /x --id dead2 --wait=5 --json
((RC == 3)) || fail "add-route --wait=5 with egress killed: rc $RC: $(outerr)"
json_assert "$BR_TMP/out" '
assert d["outcome"] == "not-live", d["outcome"]
assert "egress reload failed: sidecar not running: pid " in d["error"] and " is gone" in d["error"], d["error"]
' || fail "add-route --wait=5 --json with egress killed: $(outerr)"
# Once egress is back, the change goes live.
start_sidecar egress "$(eg_file w)" "$(eg_log w)" "$state/w/run/egress.pid"
EG_PID[w]=$SIDECAR_PID
grep -q '"host": "dead2.example.com"' "$(eg_file w)" || fail "the egress file was not written"
sidecar_has "$(eg_log w)" start "$(sha256_of "$(eg_file w)")" ok || fail "the restarted egress does not run the file"
# The owed reload is still recorded: once finds that the new egress started
# after the write (no signal needed), and then nothing is pending.
brx once w
((RC == 0)) && grep -q '^w: converged' "$BR_TMP/out" || fail "once after egress is back: rc $RC: $(outerr)"
[[ $(sidecar_live_hash "$(eg_log w)") == "$(sha256_of "$(eg_file w)")" ]] || fail "egress does not run its file"
brx plan w
((RC == 0)) || fail "once egress is back and once ran, something is still pending: rc $RC: $(outerr)"

# --- --wait=S bounds the wait --------------------------------------------------
# A sidecar younger than grace_ms is not signalled yet: the converge asks to
# be retried when the grace is over. --wait=1 may not wait for that.
cfg2=$BR_TMP/grace.yaml
bottles_config "$cfg2" <<YAML
egress:
  reload: {driver: signal, pidfile: "{state_dir}/{slug}/run/egress.pid", grace_ms: 6000}
YAML
bottle_create g
bottle_start g
brx_grace() { RC=0; "$BR_BIN" --config "$cfg2" "$@" >"$BR_TMP/out" 2>"$BR_TMP/err" || RC=$?; }
t0=$(_br_now_us)
brx_grace add-route g --host young.example.com --path / --wait=1
ms=$((($(_br_now_us) - t0) / 1000))
echo "add-route --wait=1 with a sidecar in its grace: rc $RC after $ms ms"
# Without a daemon --wait=S is a deadline too: the 6 s grace does not fit
# into 1 s, so the command says "not live" (exit 3) instead of sleeping
# through the grace and answering live (as it once did).
((RC == 3)) || fail "add-route --wait=1 without a daemon, a sidecar in its 6 s grace: rc $RC after $ms ms: $(outerr)"
echo ok
