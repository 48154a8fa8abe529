#!/usr/bin/env bash
# The signal driver signals only the sidecar (issue 16, "signals stay inside
# the bottle"). A pidfile written after an unrelated process started used to
# get that process signalled: with `expect` set, the process's executable,
# name and command line are checked first, and a mismatch leaves the bottle
# retrying, the process unsignalled; the sidecar back, the bottle converges.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
bottles_config "$cfg" <<YAML
backoff: {initial_ms: 20, max_ms: 200}
egress:
  reload:
    driver: signal
    pidfile: "{state_dir}/{slug}/run/egress.pid"
    grace_ms: 0
    expect: {exe: "$(readlink -f "$BR_SIDECAR")", comm: br-test-sidecar, cmdline_contains: "--file {state_dir}/{slug}/egress/"}
YAML
bottle_create alpha
bottle_start alpha
pidfile=$BR_TMP/state/alpha/run/egress.pid
bottle_fragment alpha a.yaml <<'YAML'
routes:
  - {host: a.example.com, path_allowlist: [/]}
YAML
start_daemon "$cfg"
wait_for slug_converged alpha
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"

# phase_says PHASE TEXT: the slug is in PHASE and its message contains TEXT.
phase_says() {
  [[ $(status_field alpha phase) == "$1" && $(status_field alpha message) == *"$2"* ]]
}
# fragment N: a new desired state, so that a converge writes and signals.
fragment() {
  printf 'routes:\n  - {host: %s.example.com, path_allowlist: [/]}\n' "$1" | bottle_fragment alpha b.yaml
}

echo "# an unrelated process that started before its pidfile was written is not signalled"
stop_sidecar "${EG_PID[alpha]}"
sleep 600 &
sleeper=$!
br_track "$sleeper"
# Written after the process started, as a sidecar writes its pidfile.
wait_for test -r "/proc/$sleeper/stat"
echo "$sleeper" | write_atomic "$pidfile"
fragment b
wait_for phase_says retrying "pid $sleeper from $pidfile is not the egress sidecar"
msg=$(status_field alpha message)
[[ $msg == *"comm \"sleep\""* && $msg == *"expected exe $(readlink -f "$BR_SIDECAR")"* ]] ||
  fail "the message does not say what the process is and what was expected: $msg"
# Retried, not given up: the attempts go on counting.
attempts_gt() {
  local a
  a=$(status_field alpha attempts)
  ((${a:-0} > $1))
}
wait_for attempts_gt "$(($(status_field alpha attempts) + 1))"
pid_gone "$sleeper" && fail "the unrelated process was signalled (SIGHUP killed it)"
not hup_pending "$sleeper" || fail "a SIGHUP waits for the unrelated process"

echo "# the sidecar back (it writes its pidfile anew): the bottle converges"
start_sidecar egress "$(eg_file alpha)" "$(eg_log alpha)" "$pidfile"
EG_PID[alpha]=$SIDECAR_PID
wait_for slug_converged alpha
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
kill -TERM "$sleeper"
reap "$sleeper"
stop_daemon
echo ok
