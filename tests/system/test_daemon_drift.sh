#!/usr/bin/env bash
# The daemon, scenario "hand edit": an edit of a live file (egress replaced
# by rename, egress rewritten in place, a host removed from pipelock's list,
# egress deleted)
# is reverted to the canonical bytes, the sidecar is told to load them, and
# the daemon logs it as drift.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
bottles_config "$cfg"
bottle_create alpha
bottle_fragment alpha github.yaml <<'YAML'
routes:
  - host: api.github.com
    path_allowlist: [/repos/acme/]
YAML
bottle_start alpha
start_daemon "$cfg"
wait_for slug_converged alpha
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
wait_for sidecar_settled "$(pl_log alpha)" "$(pl_file alpha)"
desired=$(status_field alpha desired_hash)
eg_canon=$(sha256_of "$(eg_file alpha)")
pl_canon=$(sha256_of "$(pl_file alpha)")
grep -q '^  - api.github.com$' "$(pl_file alpha)" || fail "api.github.com not on pipelock's list"

drift_lines() { grep -c '\[alpha\] drift:' "$DAEMON_LOG" || true; }
drift_lines_gt() { (($(drift_lines) > $1)); }

# revert_check LOG FILE CANON PID LOADS DRIFTS: FILE gets back CANON, the
# sidecar runs it (with LOADS given: after one more load of it than LOADS),
# one more drift line than DRIFTS is logged, and the desired state is the
# same as before.
revert_check() {
  local log=$1 file=$2 canon=$3 pid=$4 loads=$5 drifts=$6
  wait_for file_is "$file" "$canon"
  [[ -z $loads ]] || wait_for sidecar_count_ge $((loads + 1)) "$log" '' "$canon" ok
  wait_for sidecar_settled "$log" "$file"
  wait_for drift_lines_gt "$drifts"
  wait_for slug_converged alpha "$desired"
  wait_for sidecar_quiet "$pid"
}

# 1. egress replaced by an editor that writes a new file and renames it.
wait_for sidecar_quiet "${EG_PID[alpha]}"
loads=$(sidecar_count "$(eg_log alpha)" '' "$eg_canon" ok)
drifts=$(drift_lines)
write_atomic "$(eg_file alpha)" <<'JSON'
{"routes": [{"host": "api.github.com", "path_allowlist": ["/"]}, {"host": "evil.example", "path_allowlist": ["/"]}]}
JSON
revert_check "$(eg_log alpha)" "$(eg_file alpha)" "$eg_canon" "${EG_PID[alpha]}" "$loads" "$drifts"

# 2. egress rewritten in place (truncate and write, as `>` does).
loads=$(sidecar_count "$(eg_log alpha)" '' "$eg_canon" ok)
drifts=$(drift_lines)
printf '{"routes": []}\n' >"$(eg_file alpha)"
revert_check "$(eg_log alpha)" "$(eg_file alpha)" "$eg_canon" "${EG_PID[alpha]}" "$loads" "$drifts"

# 3. A host taken off pipelock's list by hand: put back, every other byte
#    kept. Pipelock watches its file, so it may or may not load the edit
#    before the revert (and skips a reload of the config it already runs):
#    what counts is that it runs the canonical bytes in the end.
drifts=$(drift_lines)
grep -v '^  - api.github.com$' "$(pl_file alpha)" >"$BR_TMP/pl.edited"
write_atomic "$(pl_file alpha)" <"$BR_TMP/pl.edited"
revert_check "$(pl_log alpha)" "$(pl_file alpha)" "$pl_canon" "${PL_PID[alpha]}" "" "$drifts"

# 4. The egress file deleted: written again.
loads=$(sidecar_count "$(eg_log alpha)" '' "$eg_canon" ok)
drifts=$(drift_lines)
rm "$(eg_file alpha)"
revert_check "$(eg_log alpha)" "$(eg_file alpha)" "$eg_canon" "${EG_PID[alpha]}" "$loads" "$drifts"

echo "drift lines: $(drift_lines)"
grep '\[alpha\] drift:' "$DAEMON_LOG" | head -n 1
# The daemon's own writes are not drift: exactly one line per hand edit.
(($(drift_lines) == 4)) || fail "expected 4 drift lines, got $(drift_lines): $(grep drift "$DAEMON_LOG")"

stop_daemon
echo ok
