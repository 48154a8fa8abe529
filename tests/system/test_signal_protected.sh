#!/usr/bin/env bash
# Whatever a pidfile says, the signal driver never signals init (pid 1), the
# daemon itself or its parent (issue 16, "signals stay inside the bottle"):
# the bottle is invalid with a message naming the pid and what it is, and
# nobody gets a signal. No pid reuse explains these, so no retry can help.
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
# This shell starts the daemon, so it is the daemon's parent: a SIGHUP to it
# is recorded, not fatal.
got_hup=0
trap 'got_hup=1' HUP
start_daemon "$cfg"
wait_for slug_converged alpha
[[ $(awk '{ sub(/.*\) /, ""); print $2 }' "/proc/$DAEMON_PID/stat") == "$$" ]] || fail "this shell is not the daemon's parent"

phase_says() {
  [[ $(status_field alpha phase) == "$1" && $(status_field alpha message) == *"$2"* ]]
}
# protected PID WHAT: with the egress pidfile naming PID, a new fragment
# leaves the bottle invalid with a message that names PID as WHAT.
protected() {
  echo "$1" | write_atomic "$pidfile"
  printf 'routes:\n  - {host: p%s.example.com, path_allowlist: [/]}\n' "$1" | bottle_fragment alpha a.yaml
  wait_for phase_says invalid "egress reload impossible: pidfile $pidfile names pid $1 ($2), which is never signalled"
}
stop_sidecar "${EG_PID[alpha]}"
protected 1 "init"
protected "$DAEMON_PID" "this daemon itself"
protected "$$" "this daemon's parent"
((got_hup == 0)) || fail "the daemon's parent (this test) got a SIGHUP"
not daemon_log_has 'SIGHUP' || fail "the daemon signalled itself: $(grep SIGHUP "$DAEMON_LOG")"

# A sidecar writes its pidfile again: converged.
start_sidecar egress "$(eg_file alpha)" "$(eg_log alpha)" "$pidfile"
printf 'routes:\n  - {host: done.example.com, path_allowlist: [/]}\n' | bottle_fragment alpha a.yaml
wait_for slug_converged alpha
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
stop_daemon
echo ok
