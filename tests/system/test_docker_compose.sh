#!/usr/bin/env bash
# The daemon in a container, as contrib/compose/docker-compose.yaml runs it.
# The shipped file is checked for what the README says the daemon needs
# (the host's pids, the engine's socket, the state root at the same path on
# both sides, the systemd unit's capabilities and nothing more) and run with
# docker-compose, its paths pointed at this test's state root and its image
# made by `docker import` of the built binary: a fragment reaches the
# sidecar containers through a pidfd, verified, and `status` on the host
# answers over the state root's control socket. The Dockerfile's runtime
# packages are the ones `ldd` names.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
source "$here/docker.sh"
source "$here/unit.sh"
compose_dir=$(cd "$here/../../contrib/compose" && pwd)
docker_setup
if ! command -v docker-compose >/dev/null 2>&1; then
  [[ ${BR_REQUIRE_DOCKER:-0} == 1 ]] && fail "docker-compose is missing: contrib/setup.sh installs it as root"
  echo "SKIP: docker-compose is missing (contrib/setup.sh installs it as root)" >&2
  exit 77
fi
# PyYAML: the interpreter docker-compose runs on has it.
py=python3
$py -c 'import yaml' 2>/dev/null || py=/usr/bin/python3

# 1. The shipped file says what the daemon needs.
$py - "$compose_dir/docker-compose.yaml" "$(unit_caps)" <<'PY' || fail "contrib/compose/docker-compose.yaml lacks what the daemon needs"
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
(name, svc), = doc["services"].items()
def need(cond, what):
    if not cond:
        sys.exit(f"{name}: {what}")
need(svc.get("pid") == "host", "pid: host")
vols = [v.split(":") for v in svc["volumes"]]
need(["/var/run/docker.sock", "/var/run/docker.sock"] in vols, "the engine's socket")
need(["/var/lib/bot-bottle/state"] * 2 in vols, "the state root at the same path")
need(svc.get("cap_drop") == ["ALL"], "cap_drop: [ALL]")
unit = sorted(c.lstrip("+").upper() for c in sys.argv[2].split(","))
need(sorted(svc.get("cap_add", [])) == unit, f"cap_add equal to the unit's set {unit}")
need("no-new-privileges:true" in svc.get("security_opt", []), "no-new-privileges")
need(svc.get("network_mode") == "none" and svc.get("read_only") is True, "no network, a read-only root")
need(str(svc.get("user")) == "0:0", "user 0:0")
PY
want=$(ldd "$BR_BIN" | awk '$3 ~ /^\// { print $3 }' | xargs -n1 readlink -f | xargs dpkg -S 2>/dev/null |
  sed 's/:.*//' | grep -v '^libc6$' | sort -u || true)
# Under ASan the binary also needs the sanitizer runtimes, which the
# Dockerfile (a release build) does not.
for pkg in $want; do
  [[ $pkg == libasan* || $pkg == libubsan* || $pkg == libgcc* || $pkg == libstdc* ]] && continue
  grep -q "install .*\b$pkg\b" "$compose_dir/Dockerfile" || fail "the Dockerfile does not install $pkg, which ldd names"
done

# 2. The daemon's image: the built binary and what ldd names, at the same paths.
root=$BR_TMP/reconciler-root
mkdir -p "$root/usr/local/bin" "$root/tmp" "$root/etc"
cp "$BR_BIN" "$root/usr/local/bin/bottle-reconciler"
for lib in $(ldd "$BR_BIN" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
image=br-test-reconciler:$DOCKER_RUN
tar -C "$root" -cf "$BR_TMP/reconciler.tar" .
docker import --change 'ENTRYPOINT ["/usr/local/bin/bottle-reconciler"]' "$BR_TMP/reconciler.tar" "$image" >/dev/null ||
  fail "docker import of the daemon's image failed"
project=$DOCKER_RUN-rec
compose_file=$BR_TMP/compose/docker-compose.yaml
_compose_cleanup() {
  local rc=$?
  set +e
  docker-compose -p "$project" -f "$compose_file" down -t 5 >/dev/null 2>&1
  docker rmi -f "$image" >/dev/null 2>&1
  (exit "$rc")
  _docker_cleanup
}
trap _compose_cleanup EXIT

# 3. The shipped file, its host paths pointed at this test's, run as it is.
mkdir -p "$BR_TMP/compose" "$BR_TMP/textfile"
cfg=$BR_TMP/compose/bottle-reconciler.yaml
docker_config "$cfg" ", verify: true" <<YAML
metrics_file: $BR_TMP/textfile/bottle_reconciler.prom
YAML
$py - "$compose_dir/docker-compose.yaml" "$compose_file" "$image" "$BR_TMP" "$DOCKER_RUN" <<'PY'
import sys, yaml
src, dst, image, tmp, run = sys.argv[1:]
doc = yaml.safe_load(open(src))
(name, svc), = doc["services"].items()
svc.pop("build")
svc["image"] = image
paths = {"/var/lib/bot-bottle/state": f"{tmp}/state",
         "/var/lib/prometheus/node-exporter": f"{tmp}/textfile"}
vols = []
for v in svc["volumes"]:
    parts = v.split(":")
    parts = [paths.get(p, p) for p in parts]
    vols.append(":".join(parts))
svc["volumes"] = vols
svc["labels"] = {"br-test": run}
# ASan's leak check at exit needs ptrace of itself, which the container lacks.
svc["environment"] = {"ASAN_OPTIONS": "detect_leaks=0"}
yaml.safe_dump(doc, open(dst, "w"), sort_keys=False)
PY
grep -q "$BR_TMP/state:$BR_TMP/state" "$compose_file" || fail "the state root is not mounted at the same path"

bottle_create alpha
bottle_metadata alpha
container_run alpha pipelock
container_run alpha egress
(cd "$BR_TMP/compose" && docker-compose -p "$project" up -d) >"$BR_TMP/compose.log" 2>&1 ||
  fail "docker-compose up failed: $(cat "$BR_TMP/compose.log")"
rec=$(docker ps -q --filter "label=com.docker.compose.project=$project")
[[ -n $rec ]] || fail "no container of project $project"
[[ $(docker inspect -f '{{.HostConfig.PidMode}}' "$rec") == host ]] || fail "the daemon's container is not in the host's pid namespace"
DAEMON_CFG=$cfg
rec_ready() {
  [[ $(docker inspect -f '{{.State.Running}}' "$rec") == true ]] ||
    fail "the daemon's container stopped: $(docker logs "$rec" 2>&1 | tail -n 20)"
  [[ $(daemon_status) == *'"ready":true'* ]]
}
wait_for -t 30 rec_ready
wait_for slug_converged alpha

bottle_fragment alpha api.yaml <<'YAML'
routes:
  - host: api.example.org
    path_allowlist: [/v1/]
YAML
wait_for grep -q '"host": "api.example.org"' "$(eg_file alpha)"
wait_for slug_converged alpha
wait_for container_loaded alpha pipelock "$(sha256_of "$(pl_file alpha)")"
wait_for container_loaded alpha egress "$(sha256_of "$(eg_file alpha)")" reload
python3 - "$BR_TMP/state/.reconciler/audit.jsonl" <<'PY' || fail "not delivered by pidfd and verified: $(cat "$BR_TMP/state/.reconciler/audit.jsonl")"
import json, sys
sent = [r for r in map(json.loads, open(sys.argv[1])) if r.get("reload") == "ok"]
assert len(sent) >= 2, sent
for r in sent:
    d = r["reload_detail"]
    assert "(host pid, pidfd)" in d and "the container sees the new file" in d, d
PY
if docker logs "$rec" 2>&1 | grep -q 'Engine API'; then
  fail "the daemon fell back to the Engine API: $(docker logs "$rec" 2>&1 | grep 'Engine API')"
fi
metrics_written() { grep -q '^bottle_reconciler_reloads_total [1-9]' "$BR_TMP/textfile/bottle_reconciler.prom" 2>/dev/null; }
wait_for metrics_written
healthy() { [[ $(docker inspect -f '{{.State.Health.Status}}' "$rec") != unhealthy ]]; }
healthy || fail "the healthcheck fails: $(docker inspect -f '{{json .State.Health}}' "$rec")"

(cd "$BR_TMP/compose" && docker-compose -p "$project" down -t 40) >>"$BR_TMP/compose.log" 2>&1 ||
  fail "docker-compose down failed: $(cat "$BR_TMP/compose.log")"

# 4. Why the same path: the state root mounted at /state instead. The
#    daemon cannot match its live files to the sidecars' mounts, which
#    inspect gives as host paths, and verify says so.
sed -i "s|$BR_TMP/state:$BR_TMP/state|$BR_TMP/state:/state|" "$compose_file"
# The host asks over the same socket with its own path of the state root.
cp "$cfg" "$BR_TMP/host.yaml"
DAEMON_CFG=$BR_TMP/host.yaml
sed -i 's|^state_dir: .*|state_dir: /state|' "$cfg"
bottle_fragment alpha more.yaml <<'YAML'
routes:
  - host: more.example.org
    path_allowlist: [/]
YAML
(cd "$BR_TMP/compose" && docker-compose -p "$project" up -d) >>"$BR_TMP/compose.log" 2>&1 ||
  fail "docker-compose up failed: $(cat "$BR_TMP/compose.log")"
rec=$(docker ps -q --filter "label=com.docker.compose.project=$project")
invalid_for_mounts() {
  [[ $(status_field alpha phase) == invalid && $(status_field alpha message) == *"no mount of the container holds the file"* ]]
}
wait_for -t 30 invalid_for_mounts
echo "state root at another path: $(status_field alpha message)"
(cd "$BR_TMP/compose" && docker-compose -p "$project" down -t 40) >>"$BR_TMP/compose.log" 2>&1 ||
  fail "docker-compose down failed: $(cat "$BR_TMP/compose.log")"
echo ok
