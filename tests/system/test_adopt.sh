#!/usr/bin/env bash
# System tests of adoption, judged by the live files and the sidecars' logs:
# a bottle whose live egress file was written by hand and that has no
# fragments is never cut off by being managed. `plan` leaves it alone;
# `apply` of a new fragment adopts it first (routes.d/00-adopted.json), so
# after `once` egress runs the old routes with their auth and the new one;
# `adopt SLUG` makes managing it change nothing; `adopt --all` adopts every
# unmanaged bottle and no managed one; a bottle without a live egress file
# has nothing to adopt. A refused change leaves no adoption behind.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh" # sidecar_settled
br_tmpdir
source "$here/approvals.sh"
use_fast_python
cfg=$BR_TMP/br.yaml
bottles_config "$cfg"
br() { "$BR_BIN" --config "$cfg" "$@"; }
state=$BR_TMP/state

# --- plan leaves an unmanaged bottle alone ----------------------------------
handmade_bottle hand
bottle_start hand
eg_hand=$(sha256_of "$(eg_file hand)")
brx plan hand
((RC == 0)) && grep -q '^hand: unmanaged' "$BR_TMP/out" || fail "plan of a bottle without routes.d: rc $RC: $(outerr)"
file_is "$(eg_file hand)" "$eg_hand" || fail "plan changed the hand-written egress file"

# --- apply adopts first, then installs; once keeps every route --------------
cat >"$BR_TMP/10-new.yaml" <<'YAML'
routes:
  - host: new.example.com
    path_allowlist: [/new/]
    auth_scheme: Bearer
    token_env: EGRESS_TOKEN_1
YAML
brx apply hand "$BR_TMP/10-new.yaml"
((RC == 0)) || fail "apply on an unmanaged bottle: rc $RC: $(outerr)"
grep -q "adopted the 3 live egress routes of hand into $state/hand/routes.d/00-adopted.json" "$BR_TMP/out" ||
  fail "apply did not say that it adopted the bottle first: $(outerr)"
[[ -f $state/hand/routes.d/00-adopted.json && -f $state/hand/routes.d/10-new.yaml ]] ||
  fail "apply did not write 00-adopted.json and the fragment: $(ls -A "$state/hand/routes.d" 2>&1)"
json_assert "$state/hand/routes.d/00-adopted.json" "assert d == {'routes': json.loads(sys.argv[2])}, d" "$HANDMADE_ROUTES" ||
  fail "00-adopted.json does not hold the live routes: $(cat "$state/hand/routes.d/00-adopted.json")"
file_is "$(eg_file hand)" "$eg_hand" || fail "apply itself changed the live egress file"
brx once hand
((RC == 0)) || fail "once after the adopting apply: rc $RC: $(outerr)"
# Before adoption existed, this apply made the bottle managed by 10-new.yaml
# alone and once dropped the three routes egress ran.
want=$(python3 -c 'import json, sys
print(json.dumps(json.loads(sys.argv[1]) + [{"host": "new.example.com", "path_allowlist": ["/new/"],
    "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_1"}]))' "$HANDMADE_ROUTES")
egress_routes_are hand "$want" || fail "egress after the adopting apply and once: $(cat "$(eg_file hand)")"
eg_new=$(sha256_of "$(eg_file hand)")
wait_for sidecar_has "$(eg_log hand)" reload "$eg_new" ok
wait_for sidecar_settled "$(pl_log hand)" "$(pl_file hand)"
grep -q '^  - new.example.com$' "$(pl_file hand)" || fail "pipelock does not allow the new host: $(cat "$(pl_file hand)")"
for h in pypi.org api.github.com api.anthropic.com; do
  grep -q "^  - $h\$" "$(pl_file hand)" || fail "pipelock lost $h: $(cat "$(pl_file hand)")"
done

# --- adopt SLUG: managing it then changes nothing ---------------------------
handmade_bottle hand2
bottle_start hand2
eg_hand2=$(sha256_of "$(eg_file hand2)")
pl_hand2=$(sha256_of "$(pl_file hand2)")
eg_lines=$(sidecar_count "$(eg_log hand2)")
pl_lines=$(sidecar_count "$(pl_log hand2)")
brx adopt hand2 --json
((RC == 0)) || fail "adopt hand2: rc $RC: $(outerr)"
json_assert "$BR_TMP/out" '
assert d["command"] == "adopt" and d["outcome"] == "installed" and d["adopted"] is True, d
assert d["fragment"] == sys.argv[2] + "/hand2/routes.d/00-adopted.json", d["fragment"]
assert "adopted the 3 live egress routes of hand2 into " + d["fragment"] in d["notes"], d["notes"]
assert d["error"] is None and d["slot"] is None, d
' "$state" || fail "adopt --json: $(outerr)"
json_assert "$state/hand2/routes.d/00-adopted.json" "assert d == {'routes': json.loads(sys.argv[2])}, d" "$HANDMADE_ROUTES" ||
  fail "00-adopted.json of hand2: $(cat "$state/hand2/routes.d/00-adopted.json")"
brx plan hand2
((RC == 0)) || fail "plan after adopt has something to change: rc $RC: $(outerr)"
brx once hand2
((RC == 0)) && grep -q '^hand2: converged: no changes' "$BR_TMP/out" || fail "once after adopt: rc $RC: $(outerr)"
file_is "$(eg_file hand2)" "$eg_hand2" || fail "managing an adopted bottle rewrote its egress file"
file_is "$(pl_file hand2)" "$pl_hand2" || fail "managing an adopted bottle rewrote its pipelock file"
[[ $(sidecar_count "$(eg_log hand2)") == "$eg_lines" && $(sidecar_count "$(pl_log hand2)") == "$pl_lines" ]] ||
  fail "managing an adopted bottle reloaded a sidecar"
# Adopting it again: nothing to do.
adopted=$(sha256_of "$state/hand2/routes.d/00-adopted.json")
brx adopt hand2
((RC == 0)) && grep -q '^hand2: unchanged' "$BR_TMP/out" || fail "adopt of a managed bottle: rc $RC: $(outerr)"
file_is "$state/hand2/routes.d/00-adopted.json" "$adopted" || fail "a second adopt rewrote 00-adopted.json"

# --- add-route on an unmanaged bottle adopts first; its slots count -----------
handmade_bottle hand3
bottle_start hand3
brx add-route hand3 --host approved.example.com --path /a/ --auth-scheme Bearer --token-ref vault:a --json
((RC == 0)) || fail "add-route on an unmanaged bottle: rc $RC: $(outerr)"
json_assert "$BR_TMP/out" '
assert d["outcome"] == "installed" and d["adopted"] is True, d
assert d["slot"] == "EGRESS_TOKEN_1", d["slot"]  # 0 and 2 run already
assert "adopted the 3 live egress routes of hand3" in d["notes"], d["notes"]
' || fail "add-route --json on an unmanaged bottle: $(outerr)"
json_assert "$state/hand3/routes.d/00-adopted.json" "assert d == {'routes': json.loads(sys.argv[2])}, d" "$HANDMADE_ROUTES" ||
  fail "00-adopted.json of hand3"
brx once hand3
((RC == 0)) || fail "once hand3: rc $RC: $(outerr)"
want=$(python3 -c 'import json, sys
print(json.dumps(json.loads(sys.argv[1]) + [{"host": "approved.example.com", "path_allowlist": ["/a/"],
    "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_1"}]))' "$HANDMADE_ROUTES")
egress_routes_are hand3 "$want" || fail "egress after add-route on an unmanaged bottle: $(cat "$(eg_file hand3)")"
wait_for sidecar_has "$(eg_log hand3)" reload "$(sha256_of "$(eg_file hand3)")" ok

# --- adopt --all: every unmanaged bottle, no managed one ---------------------
handmade_bottle un1
handmade_bottle un2
handmade_bottle managed
mkdir "$state/managed/routes.d"
printf 'routes:\n  - {host: only.example.com, path_allowlist: [/]}\n' >"$state/managed/routes.d/x.yaml"
mkdir -p "$state/bare/egress" "$state/bare/pipelock" # no live egress file, no routes.d
before_managed=$(tree_sum "$state/managed/routes.d")
before_hand=$(tree_sum "$state/hand/routes.d")
brx adopt --all
((RC == 0)) || fail "adopt --all: rc $RC: $(outerr)"
for s in un1 un2; do
  grep -q "^$s: installed: $state/$s/routes.d/00-adopted.json" "$BR_TMP/out" || fail "adopt --all did not adopt $s: $(outerr)"
  json_assert "$state/$s/routes.d/00-adopted.json" "assert d == {'routes': json.loads(sys.argv[2])}, d" "$HANDMADE_ROUTES" ||
    fail "00-adopted.json of $s"
done
for s in managed hand hand2 hand3 bare; do
  grep -q "^$s: unchanged" "$BR_TMP/out" || fail "adopt --all on $s: $(outerr)"
done
[[ $(tree_sum "$state/managed/routes.d") == "$before_managed" ]] || fail "adopt --all changed a managed bottle's fragments"
[[ $(tree_sum "$state/hand/routes.d") == "$before_hand" ]] || fail "adopt --all changed hand's fragments"
[[ ! -e $state/bare/routes.d ]] || fail "adopt --all made a bottle without a live egress file managed"

# --- a bottle without a live egress file: nothing to do ----------------------
brx adopt bare
((RC == 0)) && grep -q '^bare: unchanged' "$BR_TMP/out" || fail "adopt of a bottle without egress file: rc $RC: $(outerr)"
[[ ! -e $state/bare/routes.d ]] || fail "adopt made routes.d for a bottle with nothing to adopt"
brx plan bare
((RC == 0)) && grep -q '^bare: unmanaged' "$BR_TMP/out" || fail "bare is no longer unmanaged: $(outerr)"

# --- a live file that cannot be read as routes is not adopted ----------------
handmade_bottle broken
echo '{"routes": [{"host": 42}]}' >"$(eg_file broken)"
brx adopt broken
((RC == 1)) && grep -q 'cannot adopt' "$BR_TMP/err" || fail "adopt of an unreadable live file: rc $RC: $(outerr)"
[[ -z $(tree_sum "$state/broken/routes.d") ]] || fail "a refused adoption left a fragment: $(ls -A "$state/broken/routes.d")"

# --- a tampered live file is not adopted --------------------------------------
# A second route for a host with another token, and a key the model does not
# know (a restriction it would drop): adopting would widen what runs, so the
# operator is told why and nothing is installed.
handmade_bottle tampered
cat >"$(eg_file tampered)" <<'JSON'
{"routes": [{"host": "api.github.com", "path_allowlist": ["/repos/acme/"]},
            {"host": "API.github.com", "path_allowlist": ["/"], "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0"},
            {"host": "pypi.org", "path_allowlist": ["/simple/"], "methods": ["GET"]}]}
JSON
brx adopt tampered
((RC == 1)) && grep -q 'cannot adopt a live file that is not in the canonical form' "$BR_TMP/err" ||
  fail "adopt of a tampered live file: rc $RC: $(outerr)"
grep -q 'a second route for "API.github.com"' "$BR_TMP/err" || fail "the second route is not named: $(outerr)"
grep -q 'unknown key "methods"' "$BR_TMP/err" || fail "the unknown key is not named: $(outerr)"
[[ -z $(tree_sum "$state/tampered/routes.d") ]] || fail "a refused adoption left a fragment: $(ls -A "$state/tampered/routes.d")"

# --- a refused change on an unmanaged bottle leaves no adoption behind -------
# "1 refused (nothing is left installed)", says every change command's help.
handmade_bottle refused
printf 'routes:\n  - {host: "*.wild.example", path_allowlist: [/]}\n' >"$BR_TMP/bad.yaml"
brx apply refused "$BR_TMP/bad.yaml"
((RC == 1)) && grep -q 'routes\[0\].host: "\*.wild.example" is a wildcard' "$BR_TMP/err" ||
  fail "apply of an invalid fragment: rc $RC: $(outerr)"
# A refused change leaves nothing installed, its adoption included: the
# bottle stays unmanaged.
[[ -z $(tree_sum "$state/refused/routes.d") ]] ||
  fail "a refused apply on an unmanaged bottle left $(ls -A "$state/refused/routes.d" | tr '\n' ' ')behind"
rm -rf "$state/refused/routes.d"
brx add-route refused --host '*.wild.example' --path /
((RC == 1)) && grep -q 'host: "\*.wild.example" is a wildcard' "$BR_TMP/err" ||
  fail "add-route of a wildcard host: rc $RC: $(outerr)"
# The same for add-route.
[[ -z $(tree_sum "$state/refused/routes.d") ]] ||
  fail "a refused add-route on an unmanaged bottle left $(ls -A "$state/refused/routes.d" | tr '\n' ' ')behind"

echo ok
