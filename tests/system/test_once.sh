#!/usr/bin/env bash
# System test of the one-shot commands against real sidecar processes: once
# converges two bottles pipelock-first, plan then has nothing to do, a second
# once signals nobody, an invalid fragment changes nothing.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
bottles_config "$cfg"
br() { "$BR_BIN" --config "$cfg" "$@"; }

for slug in alpha beta; do
  bottle_create "$slug"
  bottle_start "$slug"
done
bottle_fragment alpha github.yaml <<'YAML'
routes:
  - host: api.github.com
    path_allowlist: [/repos/acme/, /user]
    auth_scheme: Bearer
    token_env: EGRESS_TOKEN_0
YAML
bottle_fragment alpha pypi.json <<'JSON'
{"routes": [{"host": "pypi.org", "path_allowlist": ["/simple/"]}]}
JSON
bottle_fragment beta anthropic.yaml <<'YAML'
routes:
  - host: API.Anthropic.com     # upper case is normalised
    path_allowlist: ["/v1/"]
YAML

pl_before_alpha=$(sha256_of "$(pl_file alpha)")

# plan: changes pending (exit 2), nothing written
rc=0
br plan >"$BR_TMP/plan.out" || rc=$?
((rc == 2)) || fail "plan before once exited $rc, expected 2"
grep -q 'pipelock: allow api.github.com' "$BR_TMP/plan.out" || fail "plan does not show the pipelock widening: $(cat "$BR_TMP/plan.out")"
[[ $(sha256_of "$(pl_file alpha)") == "$pl_before_alpha" ]] || fail "plan wrote the pipelock file"
[[ ! -e $(eg_file alpha) ]] || fail "plan created the egress file"

# once converges both bottles
br once >"$BR_TMP/once.out" || fail "once exited non-zero: $(cat "$BR_TMP/once.out")"
for slug in alpha beta; do
  grep -q "^$slug: converged" "$BR_TMP/once.out" || fail "$slug not converged: $(cat "$BR_TMP/once.out")"
  pl_hash=$(sha256_of "$(pl_file "$slug")")
  eg_hash=$(sha256_of "$(eg_file "$slug")")
  # the sidecars' own records of what they loaded
  wait_for sidecar_has "$(pl_log "$slug")" '' "$pl_hash" ok
  wait_for sidecar_has "$(eg_log "$slug")" reload "$eg_hash" ok
  [[ $(sidecar_live_hash "$(pl_log "$slug")") == "$pl_hash" ]] || fail "$slug pipelock runs an old config"
  [[ $(sidecar_live_hash "$(eg_log "$slug")") == "$eg_hash" ]] || fail "$slug egress runs an old config"
  # pipelock loaded its new config before egress loaded its new one
  pl_t=$(awk -v h="$pl_hash" '$3 == h && $4 == "ok" { print $1; exit }' "$(pl_log "$slug")")
  eg_t=$(awk -v h="$eg_hash" '$3 == h && $4 == "ok" { print $1; exit }' "$(eg_log "$slug")")
  awk -v p="$pl_t" -v e="$eg_t" 'BEGIN { exit !(p < e) }' || fail "$slug: egress loaded at $eg_t, before pipelock at $pl_t"
done

# the content: canonical egress JSON, hosts on pipelock's list, comments kept
python3 - "$(eg_file alpha)" <<'PY' || fail "alpha egress file is not the canonical rendering"
import json, sys
data = open(sys.argv[1]).read()
cfg = json.loads(data)
assert data == json.dumps(cfg, indent=2) + "\n", "not canonical"
assert cfg == {"routes": [
    {"host": "api.github.com", "path_allowlist": ["/repos/acme/", "/user"],
     "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0"},
    {"host": "pypi.org", "path_allowlist": ["/simple/"]}]}, cfg
PY
grep -q '"host": "api.anthropic.com"' "$(eg_file beta)" || fail "beta host not normalised"
diff <(grep -v '^  - api.github.com$' "$(pl_file alpha)") <(cat <<'YAML'
# pipelock config for this bottle; hand-maintained keys stay as they are
mode: strict   # strict enforces api_allowlist

api_allowlist:
  - pypi.org       # package index
  - "files.pythonhosted.org"

dlp:
  scan_bodies: true   # keep
  patterns: [aws_key, github_token]
# end of file
YAML
) || fail "pipelock file changed outside api_allowlist"
grep -q '^  - api.github.com$' "$(pl_file alpha)" || fail "api.github.com not added to alpha's pipelock list"
[[ $(stat -c %a "$(eg_file alpha)") == 644 ]] || fail "new egress file mode is not 0644"
ls -a "$BR_TMP/state/alpha/egress" "$BR_TMP/state/alpha/pipelock" | grep -q '\.br-tmp\.' && fail "temp files left behind"

# plan afterwards: nothing to do
br plan >"$BR_TMP/plan2.out" || fail "plan after once exited $?: $(cat "$BR_TMP/plan2.out")"

# a second once writes nothing and signals nobody
for slug in alpha beta; do
  wait_for sidecar_quiet "${PL_PID[$slug]}"
  wait_for sidecar_quiet "${EG_PID[$slug]}"
done
declare -A lines
for slug in alpha beta; do
  lines[$slug.pl]=$(sidecar_count "$(pl_log "$slug")")
  lines[$slug.eg]=$(sidecar_count "$(eg_log "$slug")")
done
eg_mtime=$(stat -c %Y.%y "$(eg_file alpha)")
br once >"$BR_TMP/once2.out" || fail "second once failed: $(cat "$BR_TMP/once2.out")"
grep -q '^alpha: converged: no changes' "$BR_TMP/once2.out" || fail "second once did work: $(cat "$BR_TMP/once2.out")"
for slug in alpha beta; do
  wait_for sidecar_quiet "${PL_PID[$slug]}"
  wait_for sidecar_quiet "${EG_PID[$slug]}"
  [[ $(sidecar_count "$(pl_log "$slug")") == "${lines[$slug.pl]}" ]] || fail "$slug pipelock got a reload from a no-op once"
  [[ $(sidecar_count "$(eg_log "$slug")") == "${lines[$slug.eg]}" ]] || fail "$slug egress got a reload from a no-op once"
done
[[ $(stat -c %Y.%y "$(eg_file alpha)") == "$eg_mtime" ]] || fail "a no-op once rewrote the egress file"

# an invalid fragment: exit 1, FILE:LINE message, both live files byte-identical
pl_hash=$(sha256_of "$(pl_file alpha)")
eg_hash=$(sha256_of "$(eg_file alpha)")
bottle_fragment alpha zz-bad.yaml <<'YAML'
routes:
  - host: example.org
    path_allowlist: [/ok]
  - host: "*.evil.example"
    path_allowlist: [/]
YAML
bottle_fragment alpha new.yaml <<'YAML'
routes:
  - host: new.example.org
    path_allowlist: [/]
YAML
rc=0
br once alpha >"$BR_TMP/once3.out" 2>"$BR_TMP/once3.err" || rc=$?
((rc == 1)) || fail "once with an invalid fragment exited $rc, expected 1"
grep -q "routes.d/zz-bad.yaml:4:[0-9]*: routes\[1\].host: .*wildcard" "$BR_TMP/once3.err" ||
  fail "no FILE:LINE:COLUMN: FIELD message: $(cat "$BR_TMP/once3.err")"
[[ $(sha256_of "$(pl_file alpha)") == "$pl_hash" ]] || fail "invalid input changed the pipelock file"
[[ $(sha256_of "$(eg_file alpha)") == "$eg_hash" ]] || fail "invalid input changed the egress file"
rc=0
br check "$BR_TMP/state/alpha/routes.d/zz-bad.yaml" 2>/dev/null || rc=$?
((rc == 1)) || fail "check of an invalid fragment exited $rc"
br check "$BR_TMP/state/alpha/routes.d/new.yaml" >/dev/null || fail "check of a valid fragment failed"

# apply validates and installs atomically; the fix converges
rm "$BR_TMP/state/alpha/routes.d/zz-bad.yaml"
printf 'routes:\n  - host: a.example:8080\n    path_allowlist: [/]\n' >"$BR_TMP/bad.yaml"
rc=0
br apply alpha "$BR_TMP/bad.yaml" 2>/dev/null || rc=$?
((rc == 1)) || fail "apply of an invalid fragment exited $rc"
[[ ! -e $BR_TMP/state/alpha/routes.d/bad.yaml ]] || fail "apply installed an invalid fragment"
br once alpha >/dev/null || fail "once after the fix failed"
grep -q '"host": "new.example.org"' "$(eg_file alpha)" || fail "fixed state not applied"

# --json: one document for the whole run, the same outcomes and exit status
printf 'routes:\n  - host: json.example.org\n    path_allowlist: [/j/]\n' | write_atomic "$BR_TMP/state/alpha/routes.d/json.yaml"
rc=0
br plan alpha --json >"$BR_TMP/plan.json" || rc=$?
((rc == 2)) || fail "plan --json with a change pending exited $rc"
python3 - "$BR_TMP/plan.json" <<'PY' || fail "plan --json: $(cat "$BR_TMP/plan.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["command"] == "plan" and d["exit"] == 2, d
(s,) = d["slugs"]
assert s["slug"] == "alpha" and s["outcome"] == "changes-pending", s
assert "json.example.org" in s["plan"] and s["writes"] == 0, s
PY
br once alpha --json >"$BR_TMP/once.json" || fail "once --json failed: $(cat "$BR_TMP/once.json")"
python3 - "$BR_TMP/once.json" "$(sha256_of "$(eg_file alpha)")" <<'PY' || fail "once --json: $(cat "$BR_TMP/once.json")"
import json, sys
d = json.load(open(sys.argv[1]))
(s,) = d["slugs"]
assert d["exit"] == 0 and s["outcome"] == "converged" and s["writes"] >= 1, d
eg = [r for r in s["audit"] if r["sidecar"] == "egress"]
assert eg and eg[-1]["sha256_after"] == sys.argv[2], eg
PY
echo "ok"
