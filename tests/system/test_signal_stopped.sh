#!/usr/bin/env bash
# A SIGHUP to a stopped (SIGSTOP) or zombie sidecar is not a reload
# (issue 16, "a reload counts only when it happened"): the stopped process
# would only see the signal when continued, the zombie never. The bottle
# stays retrying, and `status` says why; after SIGCONT (or with a live
# sidecar back) it converges, and the sidecar runs the new file.
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
pidfile=$BR_TMP/state/alpha/run/egress.pid
start_daemon "$cfg"
wait_for slug_converged alpha

# state_is PID LETTER: /proc/PID/stat shows that state.
state_is() { [[ $(awk '{ sub(/.*\) /, ""); print substr($0, 1, 1) }' "/proc/$1/stat" 2>/dev/null) == "$2" ]]; }
phase_says() {
  [[ $(status_field alpha phase) == "$1" && $(status_field alpha message) == *"$2"* ]]
}
attempts_gt() {
  local a
  a=$(status_field alpha attempts)
  ((${a:-0} > $1))
}
fragment() {
  printf 'routes:\n  - {host: %s.example.com, path_allowlist: [/]}\n' "$1" | bottle_fragment alpha a.yaml
}

echo "# stopped: retrying, not converged; continued: converged"
eg=${EG_PID[alpha]}
kill -STOP "$eg"
# The stop takes effect when the process next runs; until then it is not
# stopped yet, and a reload would rightly count.
wait_for state_is "$eg" T
fragment stopped
(wait_for phase_says retrying "pid $eg is stopped (state T); not counted as reloaded") ||
  fail "not retrying for the stopped sidecar: $(daemon_status alpha)"
wait_for attempts_gt "$(($(status_field alpha attempts) + 1))"
not hup_pending "$eg" || fail "a SIGHUP was queued for the stopped sidecar"
kill -CONT "$eg"
wait_for slug_converged alpha
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
sidecar_has "$(eg_log alpha)" reload "$(sha256_of "$(eg_file alpha)")" ok || fail "no reload of the new file after SIGCONT"

echo "# a zombie (its parent does not reap it): retrying"
stop_sidecar "$eg"
# The child exits at once; its parent never reaps it (python installs no
# SIGCHLD handler, unlike a shell, which may reap it before an exec).
python3 -c '
import os, sys, time
pid = os.fork()
if pid == 0:
    os._exit(0)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(f"{pid}\n")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)' "$BR_TMP/zombie.pid" &
parent=$!
br_track "$parent"
wait_for test -s "$BR_TMP/zombie.pid"
zombie=$(<"$BR_TMP/zombie.pid")
wait_for state_is "$zombie" Z
write_atomic "$pidfile" <"$BR_TMP/zombie.pid"
fragment zombie
wait_for phase_says retrying "pid $zombie is a zombie (state Z); not counted as reloaded"
wait_for attempts_gt "$(($(status_field alpha attempts) + 1))"

echo "# a live sidecar again: converged"
start_sidecar egress "$(eg_file alpha)" "$(eg_log alpha)" "$pidfile"
wait_for slug_converged alpha
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
kill -TERM "$parent"
reap "$parent"
stop_daemon
echo ok
