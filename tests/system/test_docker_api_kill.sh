#!/usr/bin/env bash
# The docker driver when the daemon cannot see the containers' processes (it
# runs in a pid namespace of its own, as in a container without --pid=host):
# the reload goes through the Engine API's kill instead, the sidecars still
# load the new bytes, and the daemon warns once that Docker's kill disables
# the containers' restart policy.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
source "$here/docker.sh"
docker_setup
if ! unshare --pid --fork --mount-proc true 2>/dev/null; then
  [[ ${BR_REQUIRE_DOCKER:-0} == 1 ]] && fail "unshare --pid does not work here (not root?)"
  echo "SKIP: unshare --pid does not work here (needs root); cannot hide the containers' pids" >&2
  exit 77
fi
cfg=$BR_TMP/br.yaml
docker_config "$cfg"
bottle_create alpha
bottle_metadata alpha
container_run alpha pipelock
container_run alpha egress
wait_for container_older_than alpha egress 600

# The daemon as pid 1 of a new pid namespace, with a /proc of its own.
DAEMON_CFG=$cfg
DAEMON_LOG=$BR_TMP/daemon.1.log
unshare --pid --fork --mount-proc --kill-child=SIGTERM "$BR_BIN" --config "$cfg" run >"$DAEMON_LOG" 2>&1 &
DAEMON_PID=$!
br_track "$DAEMON_PID"
wait_for -t 30 daemon_ready
wait_for slug_converged alpha

bottle_fragment alpha github.yaml <<'YAML'
routes:
  - host: api.github.com
    path_allowlist: [/repos/acme/]
YAML
wait_for grep -q '"host": "api.github.com"' "$(eg_file alpha)"
wait_for slug_converged alpha
wait_for container_loaded alpha pipelock "$(sha256_of "$(pl_file alpha)")"
wait_for container_loaded alpha egress "$(sha256_of "$(eg_file alpha)")" reload
audit=$BR_TMP/state/.reconciler/audit.jsonl
for sidecar in pipelock egress; do
  grep "\"sidecar\":\"$sidecar\"" "$audit" | tail -n 1 | grep -q '(Engine API kill)' ||
    fail "$sidecar was not signalled through the Engine API: $(tail -n 2 "$audit")"
done
# Said once, for both containers, naming the policy that no longer holds.
(($(grep -c 'through the Docker Engine API' "$DAEMON_LOG") == 1)) ||
  fail "the restart-policy warning is not there exactly once: $(grep -c 'Engine API' "$DAEMON_LOG")"
daemon_log_has 'restart policy "unless-stopped" will not restart it' || fail "the warning does not name the policy"
container_running alpha pipelock && container_running alpha egress || fail "a sidecar stopped after its reload"

# SIGTERM reaches the daemon as its namespace's pid 1 (unshare only waits).
kill -TERM "$(cat "/proc/$DAEMON_PID/task/$DAEMON_PID/children")"
reap "$DAEMON_PID"
((REAP_STATUS == 0)) || fail "the daemon exited with status $REAP_STATUS"
echo "ok: without the containers' pids, reloads went through the Engine API, with one warning"
