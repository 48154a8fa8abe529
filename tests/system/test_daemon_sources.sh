#!/usr/bin/env bash
# The daemon, scenario "symlinked source": a source reached through a
# symlink that is swapped atomically (git-sync's current -> rev-N) is
# followed to the new revision, whose directory is then watched; fragments
# merge in source order.
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
  - "$BR_TMP/sync/current/bottles/{slug}"
YAML
for rev in 1 2; do
  mkdir -p "$BR_TMP/sync/rev-$rev/bottles/alpha"
  printf 'routes:\n  - host: rev%s.example.org\n    path_allowlist: [/]\n' "$rev" \
    >"$BR_TMP/sync/rev-$rev/bottles/alpha/r.yaml"
done
ln -s rev-1 "$BR_TMP/sync/current"
bottle_create alpha
bottle_fragment alpha zz-local.yaml <<'YAML'
routes:
  - host: local.example.org
    path_allowlist: [/]
YAML
bottle_start alpha
start_daemon "$cfg"

# hosts_are HOST...: the egress file routes exactly these hosts, in this order.
hosts_are() {
  python3 - "$(eg_file alpha)" "$@" <<'PY'
import json, sys
try:
    hosts = [r["host"] for r in json.load(open(sys.argv[1]))["routes"]]
except (OSError, ValueError):
    sys.exit(1)
sys.exit(0 if hosts == sys.argv[2:] else 1)
PY
}
settled() {
  wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
  wait_for sidecar_settled "$(pl_log alpha)" "$(pl_file alpha)"
  wait_for slug_converged alpha
}
wait_for hosts_are local.example.org rev1.example.org
settled

# 1. The symlink swapped atomically, as git-sync does it.
ln -s rev-2 "$BR_TMP/sync/current.new"
mv -T "$BR_TMP/sync/current.new" "$BR_TMP/sync/current"
wait_for hosts_are local.example.org rev2.example.org
settled
# ...and the new revision's directory is watched, not just read once.
write_atomic "$BR_TMP/sync/rev-2/bottles/alpha/s.yaml" <<'YAML'
routes:
  - host: rev2b.example.org
    path_allowlist: [/]
YAML
wait_for hosts_are local.example.org rev2.example.org rev2b.example.org
settled

stop_daemon
echo ok
