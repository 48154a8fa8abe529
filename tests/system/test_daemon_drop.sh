#!/usr/bin/env bash
# The daemon, scenario "drop a fragment": a fragment dropped into a running
# daemon's routes.d reaches both sidecars (their own logs show the bytes of
# the live files), pipelock before egress; the other bottle is left alone.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
bottles_config "$cfg"

for slug in alpha beta; do
  bottle_create "$slug"
  bottle_start "$slug"
done
start_daemon "$cfg"

# The first pass: no fragments yet, so egress gets its (empty) file.
for slug in alpha beta; do
  wait_for slug_converged "$slug"
  wait_for sidecar_settled "$(eg_log "$slug")" "$(eg_file "$slug")"
done
beta_hash=$(status_field beta desired_hash)
beta_lines=$(sidecar_count "$(eg_log beta)")
alpha_hash=$(status_field alpha desired_hash)

bottle_fragment alpha github.yaml <<'YAML'
routes:
  - host: api.github.com
    path_allowlist: [/repos/acme/, /user]
    auth_scheme: Bearer
    token_env: EGRESS_TOKEN_0
YAML

# The egress file gets the route, and egress loads exactly those bytes.
has_route() { grep -q '"host": "api.github.com"' "$(eg_file alpha)" 2>/dev/null; }
wait_for has_route
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
wait_for sidecar_settled "$(pl_log alpha)" "$(pl_file alpha)"
grep -q '^  - api.github.com$' "$(pl_file alpha)" || fail "api.github.com is not on alpha's pipelock list"
wait_for not slug_converged alpha "$alpha_hash"
wait_for slug_converged alpha
python3 - "$(eg_file alpha)" <<'PY' || fail "alpha's egress file is not the canonical rendering of the fragment"
import json, sys
data = open(sys.argv[1]).read()
cfg = json.loads(data)
assert data == json.dumps(cfg, indent=2) + "\n", "not canonical"
assert cfg == {"routes": [
    {"host": "api.github.com", "path_allowlist": ["/repos/acme/", "/user"],
     "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0"}]}, cfg
PY

# Pipelock ran the new allowlist before egress ran the new route.
pl_hash=$(sha256_of "$(pl_file alpha)")
eg_hash=$(sha256_of "$(eg_file alpha)")
pl_t=$(awk -v h="$pl_hash" '$3 == h && $4 == "ok" { print $1; exit }' "$(pl_log alpha)")
eg_t=$(awk -v h="$eg_hash" '$3 == h && $4 == "ok" { print $1; exit }' "$(eg_log alpha)")
[[ -n $pl_t && -n $eg_t ]] || fail "no load of the new files in the sidecar logs"
awk -v p="$pl_t" -v e="$eg_t" 'BEGIN { exit !(p < e) }' || fail "egress loaded at $eg_t, before pipelock at $pl_t"
sidecar_lines_valid "$(pl_log alpha)"
sidecar_lines_valid "$(eg_log alpha)"

# beta was not touched: same desired state, no new load.
wait_for sidecar_quiet "${EG_PID[beta]}"
slug_converged beta "$beta_hash" || fail "beta changed: $(daemon_status beta)"
[[ $(sidecar_count "$(eg_log beta)") == "$beta_lines" ]] || fail "beta's egress was reloaded for alpha's fragment"

stop_daemon
echo ok
