#!/usr/bin/env bash
# The docker driver when the daemon may not signal the containers' processes
# itself: in a pid namespace of its own (as in a container without
# --pid=host), or as the systemd unit's unprivileged user in the docker group.
# The reload then goes through the Engine API's kill, the sidecars still load
# the new bytes, and the daemon warns once that Docker's kill disables the
# containers' restart policy. With CAP_KILL that user signals the process
# through its pidfd again.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
source "$here/docker.sh"
docker_setup
if ! unshare --pid --fork --mount-proc true 2>/dev/null || ! command -v setpriv >/dev/null; then
  [[ ${BR_REQUIRE_DOCKER:-0} == 1 ]] && fail "unshare --pid or setpriv does not work here (not root?)"
  echo "SKIP: unshare --pid or setpriv does not work here (needs root)" >&2
  exit 77
fi
cfg=$BR_TMP/br.yaml
docker_config "$cfg"
bottle_create alpha
bottle_metadata alpha
container_run alpha pipelock
container_run alpha egress
wait_for container_older_than alpha egress 600
audit=$BR_TMP/state/.reconciler/audit.jsonl
docker_gid=$(getent group docker | cut -d: -f3)

# Starts the daemon under the launcher words given, drops a fragment naming
# host, and checks both containers loaded it through the expected path.
phase() {
  local host=$1 path=$2
  shift 2
  DAEMON_CFG=$cfg
  DAEMON_RUNS=$((DAEMON_RUNS + 1))
  DAEMON_LOG=$BR_TMP/daemon.$DAEMON_RUNS.log
  "$@" "$BR_BIN" --config "$cfg" run >"$DAEMON_LOG" 2>&1 &
  DAEMON_PID=$!
  br_track "$DAEMON_PID"
  wait_for -t 30 daemon_ready
  wait_for slug_converged alpha
  bottle_fragment alpha "$host.yaml" <<YAML
routes:
  - host: $host
    path_allowlist: [/]
YAML
  wait_for grep -q "\"host\": \"$host\"" "$(eg_file alpha)"
  wait_for slug_converged alpha
  wait_for container_loaded alpha pipelock "$(sha256_of "$(pl_file alpha)")"
  wait_for container_loaded alpha egress "$(sha256_of "$(eg_file alpha)")" reload
  local sidecar
  for sidecar in pipelock egress; do
    grep "\"sidecar\":\"$sidecar\"" "$audit" | tail -n 1 | grep -qF "($path)" ||
      fail "$sidecar was not signalled through $path: $(tail -n 2 "$audit")"
  done
  container_running alpha pipelock && container_running alpha egress || fail "a sidecar stopped after its reload"
}

# 1. Its own pid namespace, with a /proc of its own: the daemon is pid 1 there.
phase one.example.org "Engine API kill" unshare --pid --fork --mount-proc --kill-child=SIGTERM
# Said once, for both containers, naming the policy that no longer holds.
(($(grep -c 'through the Docker Engine API' "$DAEMON_LOG") == 1)) ||
  fail "the restart-policy warning is not there exactly once: $(grep -c 'Engine API' "$DAEMON_LOG")"
daemon_log_has 'its process is not visible here: .*restart policy "unless-stopped" will not restart it' ||
  fail "the warning does not say why or name the policy"
# SIGTERM reaches the daemon as its namespace's pid 1 (unshare only waits).
kill -TERM "$(cat "/proc/$DAEMON_PID/task/$DAEMON_PID/children")"
reap "$DAEMON_PID"
((REAP_STATUS == 0)) || fail "the daemon exited with status $REAP_STATUS"

# 2. The systemd unit's way without CAP_KILL: another user, in the docker
# group. It sees the processes but may not signal them (root's).
chmod 755 "$BR_TMP"
chown -R 65534:65534 "$BR_TMP/state"
phase two.example.org "Engine API kill" setpriv --reuid=65534 --regid=65534 --groups="$docker_gid" --inh-caps=-all
daemon_log_has 'this daemon may not signal its process \(EPERM\)' || fail "the warning does not say why"
stop_daemon

# 3. The same user with CAP_KILL signals the process itself.
phase three.example.org "host pid, pidfd" setpriv --reuid=65534 --regid=65534 --groups="$docker_gid" \
  --inh-caps=+kill --ambient-caps=+kill
! daemon_log_has 'Engine API' || fail "the daemon with CAP_KILL used the Engine API"
stop_daemon
echo "ok: without the right to signal, reloads went through the Engine API with one warning; CAP_KILL suffices"
