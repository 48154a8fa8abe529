#!/usr/bin/env bash
# The docker driver, signalling a container's process itself (pidfd), does
# not count a SIGHUP to a process stopped by hand (SIGSTOP from the host; not
# a Docker pause, which the engine reports) as a reload: the signal would
# only be queued until the process is continued. The bottle retries and
# `status` says why; after SIGCONT it converges and the container's own log
# shows it loaded the new file.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
source "$here/docker.sh"
docker_setup
cfg=$BR_TMP/br.yaml
docker_config "$cfg" <<'YAML'
backoff: {initial_ms: 50, max_ms: 300}
YAML
bottle_create alpha
bottle_metadata alpha
container_run alpha pipelock
container_run alpha egress
start_daemon "$cfg"
wait_for slug_converged alpha
wait_for container_older_than alpha egress 500

# state_is PID LETTER: /proc/PID/stat shows that state.
state_is() { [[ $(awk '{ sub(/.*\) /, ""); print substr($0, 1, 1) }' "/proc/$1/stat" 2>/dev/null) == "$2" ]]; }
pid=$(container_field alpha egress '{{.State.Pid}}')
kill -STOP "$pid"
# The stop takes effect when the process next runs; until then it is not
# stopped yet, and a reload would rightly count.
wait_for state_is "$pid" T
bottle_fragment alpha a.yaml <<'YAML'
routes:
  - {host: stopped.example.com, path_allowlist: [/]}
YAML
retrying_stopped() {
  [[ $(status_field alpha phase) == retrying &&
    $(status_field alpha message) == *"container $(container_name alpha egress): pid $pid is stopped (state T); not counted as reloaded"* ]]
}
(wait_for retrying_stopped) || fail "not retrying for the stopped process: $(daemon_status alpha)"
attempts_gt() { (($(status_field alpha attempts) > $1)); }
wait_for attempts_gt "$(($(status_field alpha attempts) + 1))"
not hup_pending "$pid" || fail "a SIGHUP was queued for the stopped process"
container_running alpha egress || fail "the container is no longer running"

kill -CONT "$pid"
wait_for slug_converged alpha
wait_for container_loaded alpha egress "$(sha256_of "$(eg_file alpha)")" reload
stop_daemon
echo ok
