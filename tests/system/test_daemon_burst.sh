#!/usr/bin/env bash
# The daemon, scenario "burst": 1000 atomic rewrites of one fragment, as fast
# as a shell can make them, end with the live egress file equal to the last
# one, loaded by both sidecars, after far fewer than 1000 reloads (debounce
# and max_wait coalesce them).
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
# A quiet period of 200 ms instead of the default 20: a shell loop forks
# twice per write, and on a loaded machine (ctest -j2 under ASan) its pauses
# often pass 20 ms; each such pause rightly ends a debounce window (one run
# saw 237 reloads that way). max_wait_ms stays at its default of 1 s.
bottles_config "$cfg" <<'YAML'
debounce_ms: 200
YAML
bottle_create alpha
bottle_start alpha
start_daemon "$cfg"
wait_for slug_converged alpha
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
wait_for sidecar_quiet "${EG_PID[alpha]}"
wait_for sidecar_quiet "${PL_PID[alpha]}"
eg_before=$(sidecar_count "$(eg_log alpha)" reload)
pl_before=$(( $(sidecar_count "$(pl_log alpha)" reload) + $(sidecar_count "$(pl_log alpha)" watch) ))

n=1000
t0=$(_br_now_us)
for ((i = 0; i < n; i++)); do
  bottle_fragment alpha burst.yaml <<YAML
routes:
  - host: burst.example.org
    path_allowlist: [/common/, /write-$i/]
YAML
done
last=/write-$((n - 1))/
t1=$(_br_now_us)

# The final desired state reaches the file and the sidecar.
final() {
  python3 - "$(eg_file alpha)" "$last" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
sys.exit(0 if cfg == {"routes": [{"host": "burst.example.org",
                                  "path_allowlist": ["/common/", sys.argv[2]]}]} else 1)
PY
}
wait_for final
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
wait_for sidecar_settled "$(pl_log alpha)" "$(pl_file alpha)"
grep -q '^  - burst.example.org$' "$(pl_file alpha)" || fail "burst.example.org is not on pipelock's list"
wait_for slug_converged alpha

# Quiet again: the counts below are final.
wait_for sidecar_quiet "${EG_PID[alpha]}"
wait_for sidecar_quiet "${PL_PID[alpha]}"
final || fail "the egress file changed after it reached the final state"
eg_reloads=$(($(sidecar_count "$(eg_log alpha)" reload) - eg_before))
pl_reloads=$(($(sidecar_count "$(pl_log alpha)" reload) + $(sidecar_count "$(pl_log alpha)" watch) - pl_before))
echo "$n rewrites in $(((t1 - t0) / 1000)) ms: egress reloaded $eg_reloads time(s), pipelock $pl_reloads"
((eg_reloads >= 1)) || fail "egress was never reloaded"
((eg_reloads < 100)) || fail "egress reloaded $eg_reloads times for $n rewrites"
((pl_reloads < 100)) || fail "pipelock reloaded $pl_reloads times for $n rewrites"
sidecar_lines_valid "$(eg_log alpha)"

stop_daemon
echo ok
