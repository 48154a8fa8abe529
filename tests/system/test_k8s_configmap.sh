#!/usr/bin/env bash
# Fragments from a Kubernetes ConfigMap volume (contrib/k8s): the directory
# is written here exactly as the kubelet's atomic writer writes it (the
# payload in a timestamped directory ..2026_12_07_01_02_03.123456789, the
# ..data symlink to it swapped by renaming ..data_tmp over it, one symlink
# per key, key.yaml -> ..data/key.yaml, then the old links and the old
# directory removed). Each swap (a key added, a key changed, which is only a
# rename of ..data, a key removed) converges, and the egress sidecar loads
# each desired state once, in order, and nothing else. A swap stopped
# between the rename and the removal of a removed key's link (a dangling
# link) holds the bottle invalid, its files untouched, until the link goes.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
bottles_config "$cfg" <<YAML
sources:
  - "{state_dir}/{slug}/routes.d"
  - "$BR_TMP/configmaps/{slug}"
YAML
cm=$BR_TMP/configmaps/alpha
mkdir -p "$cm" "$BR_TMP/payload"

# cm_stage KEY=FILE...: steps 1-3 of the writer: the new payload in a new
# timestamped directory, and ..data swapped to it. Sets CM_OLD to the
# directory it replaced and CM_KEYS to the new keys.
CM_SEQ=0
cm_stage() {
  local ts kv
  CM_SEQ=$((CM_SEQ + 1))
  ts=..$(date -u +%Y_%m_%d_%H_%M_%S).$(printf '%09d' "$CM_SEQ")
  mkdir "$cm/$ts"
  CM_KEYS=()
  for kv in "$@"; do
    cp "${kv#*=}" "$cm/$ts/${kv%%=*}"
    CM_KEYS+=("${kv%%=*}")
  done
  CM_OLD=$(readlink "$cm/..data" || true)
  ln -s "$ts" "$cm/..data_tmp"
  mv -T "$cm/..data_tmp" "$cm/..data"
}
# cm_link: a link for each new key; cm_unlink: the links of keys that are
# gone, and the old payload.
cm_link() {
  local key
  for key in "${CM_KEYS[@]}"; do
    [[ -L $cm/$key ]] || ln -s "..data/$key" "$cm/$key"
  done
}
cm_unlink() {
  local link
  for link in "$cm"/*; do
    [[ -L $link && -e $link ]] || rm -f -- "$link"
  done
  [[ -z $CM_OLD ]] || rm -rf -- "${cm:?}/$CM_OLD"
}
# cm_write KEY=FILE...: the whole writer, as the kubelet runs it.
cm_write() {
  cm_stage "$@"
  cm_link
  cm_unlink
}
# payload NAME HOST...: a fragment allowing / on each HOST.
payload() {
  local file=$BR_TMP/payload/$1 h
  shift
  {
    echo "routes:"
    for h in "$@"; do echo "  - {host: $h, path_allowlist: [/]}"; done
  } >"$file"
  echo "$file"
}
# egress_hash HOST...: the SHA-256 of the egress file for these hosts (the
# canonical JSON, byte-identical to Python's json.dumps(indent=2)).
egress_hash() {
  python3 -c '
import hashlib, json, sys
doc = {"routes": [{"host": h, "path_allowlist": ["/"]} for h in sys.argv[1:]]}
print(hashlib.sha256((json.dumps(doc, indent=2) + "\n").encode()).hexdigest())' "$@"
}
# runs HOST...: both sidecars run the desired state of these hosts, and
# the daemon says the bottle converged.
runs() {
  [[ $(sidecar_live_hash "$(eg_log alpha)") == "$(egress_hash "$@")" ]] &&
    sidecar_settled "$(pl_log alpha)" "$(pl_file alpha)" && slug_converged alpha
}
STATES=()
expect() {
  STATES+=("$(egress_hash "$@")")
  wait_for runs "$@"
}

# 0. contrib/k8s: the daemon's config in the manifest loads; each bottle's
# ConfigMap is mounted where the config's sources look for it; the state
# directory is at the node's path; the example fragments are valid.
python3 -c 'import yaml' 2>/dev/null || fail "PyYAML is missing: contrib/setup.sh installs python3-yaml"
k8s=$here/../../contrib/k8s
python3 - "$k8s/daemonset.yaml" "$k8s/routes-example.yaml" "$BR_TMP/k8s" <<'PY' || fail "contrib/k8s manifests"
import os, sys, yaml
docs = [d for f in sys.argv[1:3] for d in yaml.safe_load_all(open(f))]
out = sys.argv[3]
kinds = {(d["kind"], d["metadata"]["name"]): d for d in docs}
config = kinds[("ConfigMap", "bottle-reconciler-config")]["data"]["config.yaml"]
os.makedirs(out)
open(f"{out}/config.yaml", "w").write(config)
cfg = yaml.safe_load(config)
pod = kinds[("DaemonSet", "bottle-reconciler")]["spec"]["template"]["spec"]
assert pod["hostPID"] is True, "hostPID"
c = pod["containers"][0]
mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
volumes = {v["name"]: v for v in pod["volumes"]}
assert volumes["state"]["hostPath"]["path"] == mounts["state"] == cfg["state_dir"], "state_dir at the node's path"
assert volumes["docker-sock"]["hostPath"]["path"] == mounts["docker-sock"] == "/var/run/docker.sock"
assert c["args"][:2] == ["--config", mounts["config"] + "/config.yaml"], "the config file mounted"
routes = [s for s in cfg["sources"] if not s.startswith("{state_dir}")]
assert len(routes) == 1 and routes[0].endswith("/{slug}"), "one ConfigMap source"
for name, v in volumes.items():
    cm = v.get("configMap", {}).get("name", "")
    if cm.startswith("bottle-routes-"):
        slug = cm[len("bottle-routes-"):]
        assert mounts[name] == routes[0].replace("{slug}", slug), f"{cm} mounted at {mounts[name]}"
        data = kinds[("ConfigMap", cm)]["data"]
        os.makedirs(f"{out}/tree/bottles/{slug}")
        for key, text in data.items():
            open(f"{out}/tree/bottles/{slug}/{key}", "w").write(text)
PY
"$BR_BIN" --config "$BR_TMP/k8s/config.yaml" check --tree "$BR_TMP/k8s/tree" >/dev/null ||
  fail "the manifest's config or its example fragments are invalid"

bottle_create alpha
bottle_start alpha
cm_write a.yaml="$(payload a1.yaml a1.example.org)"
start_daemon "$cfg"
expect a1.example.org
[[ -L $cm/a.yaml && $(readlink "$cm/a.yaml") == ..data/a.yaml && $(readlink "$cm/..data") == ..20* ]] ||
  fail "not the atomic writer's layout: $(ls -la "$cm")"

# 1. A key added.
cm_write a.yaml="$(payload a1.yaml a1.example.org)" b.yaml="$(payload b1.yaml b1.example.org)"
expect a1.example.org b1.example.org

# 2. A key changed: only ..data is renamed; no link changes.
links_before=$(cd "$cm" && stat -c '%n %i' a.yaml b.yaml)
cm_write a.yaml="$(payload a2.yaml a2.example.org)" b.yaml="$(payload b1.yaml b1.example.org)"
[[ $(cd "$cm" && stat -c '%n %i' a.yaml b.yaml) == "$links_before" ]] || fail "the writer replaced a link"
expect a2.example.org b1.example.org

# 3. A key removed, the writer stopped after the rename: b.yaml dangles. The
# bottle is invalid and keeps what it runs; removing the link converges it.
eg_before=$(sha256_of "$(eg_file alpha)")
cm_stage a.yaml="$(payload a2.yaml a2.example.org)"
wait_for [ -L "$cm/b.yaml" ]
invalid_dangling() {
  [[ $(status_field alpha phase) == invalid && $(status_field alpha message) == *dangling* ]]
}
wait_for invalid_dangling
[[ $(sha256_of "$(eg_file alpha)") == "$eg_before" ]] || fail "an invalid swap changed the egress file"
cm_link
cm_unlink
expect a2.example.org

# 4. Several swaps in a row, as fast as the writer goes: the last one holds.
# Each is a whole desired state, which a slow machine may converge on its
# way to the last.
for i in 3 4 5 6; do
  cm_write a.yaml="$(payload "a$i.yaml" "a$i.example.org")" c.yaml="$(payload c.yaml c.example.org)"
  ((i == 6)) || STATES+=("$(egress_hash "a$i.example.org" c.example.org)")
done
expect a6.example.org c.example.org

# The egress sidecar loaded the desired states in order (a burst may skip
# some), and nothing else; every payload directory but the last is gone.
sidecar_lines_valid "$(eg_log alpha)"
sidecar_lines_valid "$(pl_log alpha)"
python3 - "$(eg_log alpha)" "${STATES[@]}" <<'PY' || fail "the egress sidecar loaded a state that was never desired: $(cat "$(eg_log alpha)")"
import sys
loaded = [l.split()[2] for l in open(sys.argv[1]) if l.split()[1] == "reload"]
states = sys.argv[2:]
pos = 0
for h in loaded:
    if h not in states[pos:]:
        sys.exit(1)
    pos = states.index(h, pos)
sys.exit(0 if loaded and loaded[-1] == states[-1] else 1)
PY
(($(cd "$cm" && find . -maxdepth 1 -name '..20*' | wc -l) == 1)) || fail "old payloads left: $(ls -a "$cm")"
stop_daemon
echo ok
