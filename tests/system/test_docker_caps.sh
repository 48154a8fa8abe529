#!/usr/bin/env bash
# The docker driver run as the shipped unit runs the daemon: root, with no
# capabilities but the unit's CapabilityBoundingSet. `verify: true` reads
# each file as its container sees it, through /proc/PID/root of a process
# that has more capabilities than the daemon: CAP_SYS_PTRACE is what lets
# it. With the unit's set a fragment reaches both containers, delivered
# through a pidfd and verified; without CAP_SYS_PTRACE alone, verify
# cannot read and the bottle is invalid with the reason.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
source "$here/docker.sh"
source "$here/unit.sh"
docker_setup
[[ $(id -u) == 0 ]] || fail "the docker tests run as root"
command -v setpriv >/dev/null || fail "setpriv is missing (util-linux)"
real_bin=$BR_BIN
as_unit_wrapper "$BR_TMP/as-unit" "$real_bin"
as_unit_wrapper "$BR_TMP/as-unit-no-ptrace" "$real_bin" CAP_SYS_PTRACE
cfg=$BR_TMP/br.yaml
docker_config "$cfg" ", verify: true"
bottle_create alpha
bottle_metadata alpha
container_run alpha pipelock
container_run alpha egress

BR_BIN=$BR_TMP/as-unit start_daemon "$cfg"
[[ $(awk '$1 == "CapEff:" { print $2 }' "/proc/$DAEMON_PID/status") == "$(unit_cap_mask)" ]] ||
  fail "the daemon does not run with the unit's capabilities"
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
audit=$BR_TMP/state/.reconciler/audit.jsonl
python3 - "$audit" <<'PY' || fail "the reloads were not delivered by pidfd and verified: $(cat "$audit")"
import json, sys
sent = [r for r in map(json.loads, open(sys.argv[1])) if r.get("reload") == "ok"]
assert len(sent) >= 2, sent
for r in sent:
    d = r["reload_detail"]
    assert "(host pid, pidfd)" in d and "the container sees the new file" in d, d
PY
stop_daemon

# Without CAP_SYS_PTRACE, and nothing else taken: verify cannot look.
bottle_fragment alpha more.yaml <<'YAML'
routes:
  - host: more.example.org
    path_allowlist: [/]
YAML
rc=0
out=$("$BR_TMP/as-unit-no-ptrace" --config "$cfg" once alpha 2>&1) || rc=$?
echo "without CAP_SYS_PTRACE: $out"
((rc == 1)) || fail "once without CAP_SYS_PTRACE exited $rc, expected 1"
[[ $out == *"verify: may not read"* ]] || fail "verify did not say why it failed: $out"
# With it again: converged.
out=$("$BR_TMP/as-unit" --config "$cfg" once alpha 2>&1) || fail "once with the unit's capabilities failed: $out"
wait_for container_loaded alpha egress "$(sha256_of "$(eg_file alpha)")" reload
echo ok
