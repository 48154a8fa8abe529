#!/usr/bin/env bash
# The daemon, scenario "young sidecar": an egress sidecar that a SIGHUP kills
# during its first 1.5 s (--startup-delay-ms 1500, as a real proxy before it
# installs its handler) is restarted just before, and just after, a fragment
# is dropped. With grace_ms 2000 the daemon never kills it: the sidecar stays
# alive and ends up running the new file.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
cat >"$cfg" <<YAML
state_dir: $BR_TMP/state
backoff: {initial_ms: 20, max_ms: 200}
pipelock:
  settle_ms: 150
  reload: {driver: signal, pidfile: "{state_dir}/{slug}/run/pipelock.pid", grace_ms: 0}
egress:
  reload: {driver: signal, pidfile: "{state_dir}/{slug}/run/egress.pid", grace_ms: 2000}
YAML
pidfile=$BR_TMP/state/alpha/run/egress.pid
bottle_create alpha
bottle_start alpha
start_daemon "$cfg"
wait_for slug_converged alpha
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"

# restart_egress: SIGTERM the running egress, start one that dies on an early SIGHUP.
restart_egress() {
  stop_sidecar "${EG_PID[alpha]}"
  start_sidecar egress "$(eg_file alpha)" "$(eg_log alpha)" "$pidfile" --startup-delay-ms 1500
  EG_PID[alpha]=$SIDECAR_PID
}

# check_round HOST: the young egress survived and runs the file that holds HOST.
check_round() {
  local host=$1
  has() { grep -q "\"host\": \"$host\"" "$(eg_file alpha)"; }
  wait_for has
  wait_for -t 15 sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
  wait_for slug_converged alpha
  pid_gone "${EG_PID[alpha]}" && fail "the daemon killed the young egress sidecar (round $host)"
  hup_safe "${EG_PID[alpha]}" || fail "the egress sidecar's start-up window is not over yet"
  # Survived a converge; now let the sidecar sit quiet and check again.
  wait_for sidecar_quiet "${EG_PID[alpha]}"
  pid_gone "${EG_PID[alpha]}" && fail "the egress sidecar died (round $host)"
  grep -q "\[alpha\] .*egress reload deferred" "$DAEMON_LOG" ||
    fail "the daemon never deferred a reload for the sidecar's grace"
  return 0
}

# Round 1: the sidecar starts, then the fragment lands: the file is written
# after the start, so the sidecar must be signalled, but only after its grace.
restart_egress
bottle_fragment alpha one.yaml <<'YAML'
routes:
  - host: one.example.org
    path_allowlist: [/]
YAML
check_round one.example.org
sidecar_has "$(eg_log alpha)" reload "$(sha256_of "$(eg_file alpha)")" ok ||
  fail "round 1: the sidecar runs the file but was never reloaded"

# Round 2: the fragment lands, then the sidecar restarts at once. Whichever
# way the race goes, the new sidecar must survive and run the new file.
bottle_fragment alpha two.yaml <<'YAML'
routes:
  - host: two.example.org
    path_allowlist: [/]
YAML
restart_egress
check_round two.example.org

stop_daemon
stop_sidecar "${EG_PID[alpha]}"
echo ok
