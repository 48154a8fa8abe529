#!/usr/bin/env bash
# The daemon, scenario "bottles come and go": a bottle created while the
# daemon runs (built in place, or moved in whole) gets watched and converged;
# a removed bottle disappears from `status` with its records; a bottle
# removed and created again under the same name starts afresh.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
bottles_config "$cfg"
bottle_create alpha
bottle_start alpha
start_daemon "$cfg"
wait_for slug_converged alpha

# converged_with SLUG HOST: the file has HOST, both sidecars run the files, status says converged.
converged_with() {
  local slug=$1 host=$2
  has() { grep -q "\"host\": \"$host\"" "$(eg_file "$slug")" 2>/dev/null; }
  wait_for has
  wait_for sidecar_settled "$(eg_log "$slug")" "$(eg_file "$slug")"
  wait_for sidecar_settled "$(pl_log "$slug")" "$(pl_file "$slug")"
  grep -q "^  - $host$" "$(pl_file "$slug")" || fail "$host is not on $slug's pipelock list"
  wait_for slug_converged "$slug"
}

# 1. Built in place, directory by directory, while the daemon watches; its
#    sidecars start before the fragment lands.
bottle_create beta
bottle_start beta
wait_for status_lists beta
bottle_fragment beta b.yaml <<'YAML'
routes:
  - host: beta.example.org
    path_allowlist: [/b/]
YAML
converged_with beta beta.example.org

# 2. Prepared elsewhere and moved in whole, fragment included; the sidecars
#    start afterwards (they read the file the daemon wrote, or get a signal).
staged=$BR_TMP/staging/gamma
mkdir -p "$staged/pipelock" "$staged/egress" "$staged/routes.d" "$staged/run"
printf 'mode: strict\napi_allowlist:\n  - pypi.org\n' >"$staged/pipelock/pipelock.yaml"
printf 'routes:\n  - host: gamma.example.org\n    path_allowlist: [/g/]\n' >"$staged/routes.d/g.yaml"
mv "$staged" "$BR_TMP/state/gamma"
bottle_start gamma
converged_with gamma gamma.example.org

# 3. Removed: its sidecars stop, the directory goes, status forgets it and
#    its records go with it.
[[ -e $BR_TMP/state/.reconciler/added/beta.json ]] || fail "no record of the hosts added to beta's pipelock"
[[ -e $BR_TMP/state/.reconciler/reloads/beta ]] || fail "no reload file for beta"
stop_sidecar "${PL_PID[beta]}"
stop_sidecar "${EG_PID[beta]}"
wait_for tree_removed "$BR_TMP/state/beta"
wait_for not status_lists beta
daemon_log_has '\[beta\] bottle removed' || fail "no log line for beta's removal"
[[ ! -e $BR_TMP/state/.reconciler/added/beta.json && ! -e $BR_TMP/state/.reconciler/reloads/beta ]] ||
  fail "beta's records were kept after its removal"
rc=0
"$BR_BIN" --config "$cfg" status beta >/dev/null 2>"$BR_TMP/status.err" || rc=$?
((rc == 1)) || fail "status of a removed slug exited $rc"
grep -q 'no slug beta' "$BR_TMP/status.err" || fail "status of a removed slug said: $(cat "$BR_TMP/status.err")"

# 4. Moved away (not deleted) counts as removed too.
mv "$BR_TMP/state/gamma" "$BR_TMP/gamma.parked"
wait_for not status_lists gamma

# 5. The same name again, from scratch: a new bottle, converged anew.
bottle_create beta
bottle_start beta
bottle_fragment beta b2.yaml <<'YAML'
routes:
  - host: beta2.example.org
    path_allowlist: [/b2/]
YAML
converged_with beta beta2.example.org
grep -q '"host": "beta.example.org"' "$(eg_file beta)" && fail "the new beta has the old beta's route"

# alpha saw none of this.
slug_converged alpha || fail "alpha left converged: $(daemon_status alpha)"
stop_daemon
echo ok
