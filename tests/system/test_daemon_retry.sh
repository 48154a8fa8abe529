#!/usr/bin/env bash
# The daemon, scenario "sidecar killed": with egress dead (SIGKILL: its
# pidfile stays behind), a new fragment leaves the slug retrying with a
# growing attempt count in `status`; a new egress on the same pidfile ends
# it: the new sidecar runs the new file and the slug is converged.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
bottles_config "$cfg" <<'YAML'
backoff: {initial_ms: 20, max_ms: 200}
YAML
bottle_create alpha
bottle_start alpha
start_daemon "$cfg"
wait_for slug_converged alpha
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
old_eg=$(sha256_of "$(eg_file alpha)")

kill -KILL "${EG_PID[alpha]}"
reap "${EG_PID[alpha]}"
[[ -e $BR_TMP/state/alpha/run/egress.pid ]] || fail "a SIGKILLed sidecar removed its pidfile"

bottle_fragment alpha pypi.yaml <<'YAML'
routes:
  - host: pypi.org
    path_allowlist: [/simple/]
  - host: upload.pypi.org
    path_allowlist: [/legacy/]
YAML

# Retrying, with the attempts counted up over time.
attempts_ge() {
  local a
  a=$(status_field alpha attempts)
  [[ $(status_field alpha phase) == retrying && ${a:-0} -ge $1 ]]
}
wait_for attempts_ge 3
a1=$(status_field alpha attempts)
wait_for attempts_ge $((a1 + 2))
a2=$(status_field alpha attempts)
echo "attempts: $a1, then $a2"
# One answer, so the phase cannot change between the questions: a retrying
# slug shows when it tries next, and why, naming the sidecar.
retry_shown() {
  daemon_status alpha | python3 -c '
import json, sys
s = json.load(sys.stdin)["slugs"][0]
if s["phase"] != "retrying":
    sys.exit(1)
assert s.get("next_try") and s["next_try"] >= s["last_converge"], s
assert "egress" in s.get("message", ""), s
'
}
wait_for retry_shown
daemon_log_has '\[alpha\] .*egress.*\(attempt [0-9]+\)' || fail "no retry line in the daemon's log"

# The file is written (pipelock first, then egress), only the reload is owed.
grep -q '"host": "upload.pypi.org"' "$(eg_file alpha)" || fail "the egress file was not written"
new_eg=$(sha256_of "$(eg_file alpha)")
[[ $new_eg != "$old_eg" ]] || fail "egress file unchanged"
wait_for sidecar_settled "$(pl_log alpha)" "$(pl_file alpha)"

# A new sidecar on the same pidfile: it reads the new file when it starts,
# and the next retry sees that (no signal needed) and ends the backoff.
start_sidecar egress "$(eg_file alpha)" "$(eg_log alpha)" "$BR_TMP/state/alpha/run/egress.pid"
EG_PID[alpha]=$SIDECAR_PID
wait_for slug_converged alpha
[[ $(sidecar_live_hash "$(eg_log alpha)") == "$new_eg" ]] || fail "the new egress does not run the new file"
sidecar_has "$(eg_log alpha)" start "$new_eg" ok || fail "the new egress did not start on the new file"
[[ $(status_field alpha attempts) == 0 ]] || fail "attempts not reset after success: $(daemon_status alpha)"
[[ -z $(status_field alpha next_try) ]] || fail "a converged slug still shows a next try"
grep -q '^egress   reload done ' "$BR_TMP/state/.reconciler/reloads/alpha" ||
  fail "the owed egress reload is still recorded"

# Converged means quiet: no more attempts.
hash=$(status_field alpha desired_hash)
wait_for sidecar_quiet "${EG_PID[alpha]}"
slug_converged alpha "$hash" || fail "alpha left converged: $(daemon_status alpha)"
pid_gone "${EG_PID[alpha]}" && fail "the new egress sidecar died"

stop_daemon
echo ok
