#!/usr/bin/env bash
# The docker driver's bind-mount checks against real containers. A sidecar
# that bind-mounts its live *file* would keep reading the old inode after
# every atomic replace: the slug is reported invalid with the fix, never
# converged, and the container is not signalled; recreated with a directory
# mount, it converges. A directory mount whose host directory was removed
# (the kernel shows //deleted) or renamed away is stale the same way; a
# restart of the container mends it.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
source "$here/docker.sh"
docker_setup
cfg=$BR_TMP/br.yaml
docker_config "$cfg" <<'YAML'
backoff: {initial_ms: 50, max_ms: 400}
YAML
bottle_create alpha
bottle_metadata alpha
eg_dir=$BR_TMP/state/alpha/egress
printf '{\n  "routes": []\n}\n' >"$eg_dir/egress_routes.yaml"
container_run alpha pipelock
# Docker would make a directory of a missing source: the file exists first.
container_run alpha egress -v "$eg_dir/egress_routes.yaml:/etc/egress/egress_routes.yaml"
start_daemon "$cfg"
wait_for slug_converged alpha
wait_for container_older_than alpha egress 600

# --- a single-file bind mount -------------------------------------------------
reloads=$(container_count alpha egress reload)
bottle_fragment alpha github.yaml <<'YAML'
routes:
  - host: api.github.com
    path_allowlist: [/repos/acme/]
YAML
reported_invalid() {
  [[ $(status_field alpha phase) == invalid && $(status_field alpha message) == *"$1"* ]]
}
wait_for reported_invalid "bind-mounts the file $eg_dir/egress_routes.yaml itself"
msg=$(status_field alpha message)
[[ $msg == *"bind-mount the directory instead (-v $eg_dir:/etc/egress)"* ]] || fail "no fix in: $msg"
daemon_log_has "bind-mounts the file $eg_dir/egress_routes.yaml itself" || fail "the log does not say it"
(($(container_count alpha egress reload) == reloads)) || fail "the misconfigured egress was signalled"
eg_hash=$(sha256_of "$(eg_file alpha)")
# Why it matters: the container still sees the file it started with.
pid=$(container_field alpha egress '{{.State.Pid}}')
[[ $(sha256_of "/proc/$pid/root/etc/egress/egress_routes.yaml") != "$eg_hash" ]] ||
  fail "the single-file mount shows the new file; the check would be pointless"

# Recreated with the directory mounted, it reads the new file at start and
# the slug converges (the start event brings the daemon back to it).
docker rm -f "$(container_name alpha egress)" >/dev/null
container_run alpha egress
wait_for container_loaded alpha egress "$eg_hash" start
wait_for slug_converged alpha
wait_for container_older_than alpha egress 600

# --- a removed directory: //deleted --------------------------------------------
wait_for tree_removed "$eg_dir"
mkdir "$eg_dir"
bottle_fragment alpha pypi.yaml <<'YAML'
routes:
  - host: pypi.org
    path_allowlist: [/simple/]
YAML
wait_for reported_invalid "reads a deleted directory"
msg=$(status_field alpha message)
[[ $msg == *"//deleted"* && $msg == *"restart the container"* ]] || fail "no kernel evidence or fix in: $msg"
eg_hash=$(sha256_of "$(eg_file alpha)")
docker restart -t 5 "$(container_name alpha egress)" >/dev/null
wait_for container_loaded alpha egress "$eg_hash" start
wait_for slug_converged alpha
wait_for container_older_than alpha egress 600

# --- a directory renamed away ---------------------------------------------------
mv "$eg_dir" "$eg_dir.old"
mkdir "$eg_dir"
cp "$eg_dir.old/egress_routes.yaml" "$eg_dir/"
bottle_fragment alpha more.yaml <<'YAML'
routes:
  - host: files.pythonhosted.org
    path_allowlist: [/packages/]
YAML
wait_for reported_invalid "does not see this host's $eg_dir"
eg_hash=$(sha256_of "$(eg_file alpha)")
docker restart -t 5 "$(container_name alpha egress)" >/dev/null
wait_for container_loaded alpha egress "$eg_hash" start
wait_for slug_converged alpha
echo "ok: single-file, deleted and renamed bind mounts reported with their fix; mended containers converge"
