#!/usr/bin/env bash
# System tests of approvals without --wait, judged by the fragment files,
# the live files after `once`, the sidecars' logs, exit codes and messages:
# add-route from stdin, a file and flags (host lowered, the lowest free
# EGRESS_TOKEN_N, a known host keeps its auth, two at once get two slots,
# invalid proposals refused naming the field, --json); remove-route
# (refused for a host an operator fragment or another source grants, --path);
# revoke; the audit record of each change (actor from --actor, else $USER).
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
br_tmpdir
source "$here/approvals.sh"
use_fast_python
cfg=$BR_TMP/br.yaml
bottles_config "$cfg"
br() { "$BR_BIN" --config "$cfg" "$@"; }
state=$BR_TMP/state
audit=$state/.reconciler/audit.jsonl
unset SUDO_USER VISUAL
export USER=tester

# audit_has EVENT ACTOR APPROVAL_ID [SLOT]: the audit log has such a record.
audit_has() {
  [[ -e $audit ]] || return 1
  python3 -c 'import json, sys
event, actor, aid, slot = sys.argv[2:6]
for line in open(sys.argv[1]):
    r = json.loads(line)
    if (r.get("event") == event and r.get("actor") == actor and r.get("approval_id") == aid
            and (not slot or r.get("slot") == slot)):
        sys.exit(0)
sys.exit(1)' "$audit" "$1" "$2" "$3" "${4:-}"
}

# --- the audit record of a change on a state directory nothing ran on yet ----
bottle_create fresh
[[ ! -e $state/.reconciler ]] || fail "the state directory is not fresh"
brx add-route fresh --host audit.example.com --path / --id first --actor alice
((RC == 0)) || fail "add-route on a fresh state directory: rc $RC: $(outerr)"
# The first change on a state directory that no converge has used yet
# makes STATE/.reconciler and keeps its audit record.
audit_has add-route alice first ||
  fail "add-route as the first command on a state directory wrote no audit record: $(outerr)"

# --- a bottle with slots 0 and 2 taken -------------------------------------
handmade_bottle ap
bottle_start ap
brx adopt ap
((RC == 0)) || fail "adopt ap: rc $RC: $(outerr)"
brx once ap
((RC == 0)) || fail "once ap: rc $RC: $(outerr)"
d=$state/ap/routes.d

# --- add-route: the proposal on stdin ----------------------------------------
brx add-route ap - --actor alice <<'JSON'
{"host": "Foo.Example.COM", "path_allowlist": ["/v1/"], "auth": {"scheme": "Bearer", "token_ref": "vault:foo"},
 "id": "stdin1"}
JSON
((RC == 0)) || fail "add-route from stdin: rc $RC: $(outerr)"
grep -q 'foo.example.com: credential slot EGRESS_TOKEN_1' "$BR_TMP/out" || fail "slot not printed: $(outerr)"
grep -q "^ap: installed: $d/~approval-stdin1.json" "$BR_TMP/out" || fail "fragment not named: $(outerr)"
json_assert "$d/~approval-stdin1.json" 'assert d == {"routes": [{"host": "foo.example.com", "path_allowlist": ["/v1/"],
    "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_1"}]}, d' ||
  fail "the approval from stdin: $(cat "$d/~approval-stdin1.json")"

# --- add-route: the proposal as a file, with --json --------------------------
cat >"$BR_TMP/proposal.json" <<'JSON'
{"host": "bar.example.com", "path_allowlist": ["/api/", "/api/"], "auth": {"scheme": "token", "token_ref": "vault:bar"}}
JSON
brx add-route ap "$BR_TMP/proposal.json" --json
((RC == 0)) || fail "add-route from a file: rc $RC: $(outerr)"
json_assert "$BR_TMP/out" '
keys = {"command", "slug", "outcome", "approval_id", "fragment", "slot", "egress_before", "egress_after",
        "pipelock_before", "pipelock_after", "diff", "error"}
assert keys <= set(d), sorted(keys - set(d))
assert d["command"] == "add-route" and d["slug"] == "ap" and d["outcome"] == "installed", d
assert d["approval_id"], d
assert d["fragment"] == "%s/~approval-%s.json" % (sys.argv[2], d["approval_id"]), d["fragment"]
assert d["slot"] == "EGRESS_TOKEN_3", d["slot"]
assert d["auth_ignored"] is False, d
assert d["error"] is None, d["error"]
# Not converged yet: egress runs the hand-written routes before and after.
assert d["egress_before"]["routes"] == json.loads(sys.argv[3]), d["egress_before"]
assert d["egress_after"] == d["egress_before"], d["egress_after"]
assert "api.github.com" in d["pipelock_before"] and "bar.example.com" not in d["pipelock_after"], d
assert d["diff"]["hosts_added"] == ["bar.example.com"], d["diff"]
assert d["diff"]["paths_added"] == {"bar.example.com": ["/api/"]}, d["diff"]
' "$d" "$HANDMADE_ROUTES" || fail "add-route --json: $(outerr)"
bar_id=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["approval_id"])' "$BR_TMP/out")
json_assert "$d/~approval-$bar_id.json" 'assert d == {"routes": [{"host": "bar.example.com", "path_allowlist": ["/api/"],
    "auth_scheme": "token", "token_env": "EGRESS_TOKEN_3"}]}, d' || fail "the approval from a file"

# --- add-route: flags --------------------------------------------------------
brx add-route ap --host Baz.Example.com --path /a --path /b --auth-scheme Bearer --token-ref vault:baz \
  --id flags1 --actor bob
((RC == 0)) || fail "add-route with flags: rc $RC: $(outerr)"
grep -q 'baz.example.com: credential slot EGRESS_TOKEN_4' "$BR_TMP/out" || fail "flags: slot: $(outerr)"
json_assert "$d/~approval-flags1.json" 'assert d == {"routes": [{"host": "baz.example.com", "path_allowlist": ["/a", "/b"],
    "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_4"}]}, d' || fail "the approval from flags"

# --- a host the bottle has keeps its auth; the paths are united --------------
brx add-route ap --host API.GitHub.com --path /user --auth-scheme token --token-ref vault:other --json
((RC == 0)) || fail "add-route of a known host: rc $RC: $(outerr)"
json_assert "$BR_TMP/out" '
assert d["outcome"] == "installed" and d["auth_ignored"] is True and d["slot"] is None, d
assert d["diff"]["paths_added"] == {"api.github.com": ["/user"]} and d["diff"]["auth_changed"] == [], d["diff"]
' || fail "add-route of a known host --json: $(outerr)"
gh_frag=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["fragment"])' "$BR_TMP/out")
json_assert "$gh_frag" 'assert d == {"routes": [{"host": "api.github.com", "path_allowlist": ["/user"]}]}, d' ||
  fail "the approval of a known host carries auth: $(cat "$gh_frag")"

# --- once: egress runs every approval, each with its auth --------------------
brx once ap
((RC == 0)) || fail "once after the approvals: rc $RC: $(outerr)"
python3 - "$(eg_file ap)" <<'PY' || fail "egress after the approvals: $(cat "$(eg_file ap)")"
import json, sys
routes = {r["host"]: r for r in json.load(open(sys.argv[1]))["routes"]}
want = {
    "api.github.com": {"host": "api.github.com", "path_allowlist": ["/repos/acme/", "/user"],
                       "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0"},
    "pypi.org": {"host": "pypi.org", "path_allowlist": ["/simple/"]},
    "api.anthropic.com": {"host": "api.anthropic.com", "path_allowlist": ["/v1/"],
                          "auth_scheme": "x-api-key", "token_env": "EGRESS_TOKEN_2"},
    "foo.example.com": {"host": "foo.example.com", "path_allowlist": ["/v1/"],
                        "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_1"},
    "bar.example.com": {"host": "bar.example.com", "path_allowlist": ["/api/"],
                        "auth_scheme": "token", "token_env": "EGRESS_TOKEN_3"},
    "baz.example.com": {"host": "baz.example.com", "path_allowlist": ["/a", "/b"],
                        "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_4"},
}
assert routes == want, routes
PY
wait_for sidecar_has "$(eg_log ap)" reload "$(sha256_of "$(eg_file ap)")" ok
wait_for sidecar_has "$(pl_log ap)" '' "$(sha256_of "$(pl_file ap)")" ok
for h in foo bar baz; do
  grep -q "^  - $h.example.com\$" "$(pl_file ap)" || fail "pipelock does not allow $h.example.com"
done

# --- two add-route at once on one bottle: two slots --------------------------
pids=()
for h in c1 c2; do
  br add-route ap --host $h.example.com --path / --auth-scheme Bearer --token-ref vault:$h --json \
    >"$BR_TMP/$h.json" 2>"$BR_TMP/$h.err" &
  pids+=($!)
done
for p in "${pids[@]}"; do
  rc=0
  wait "$p" || rc=$?
  ((rc == 0)) || fail "a concurrent add-route failed: rc $rc: $(cat "$BR_TMP"/c?.err)"
done
python3 - "$BR_TMP/c1.json" "$BR_TMP/c2.json" <<'PY' || fail "concurrent add-routes: $(cat "$BR_TMP"/c?.json)"
import json, sys
docs = [json.load(open(f)) for f in sys.argv[1:]]
slots = sorted(d["slot"] for d in docs)
assert slots == ["EGRESS_TOKEN_5", "EGRESS_TOKEN_6"], slots
for d in docs:
    frag = json.load(open(d["fragment"]))
    assert frag["routes"][0]["token_env"] == d["slot"], (frag, d["slot"])
PY

# --- invalid proposals: refused, naming the field; nothing installed ---------
before=$(tree_sum "$d")
brx add-route ap - <<'JSON'
{"host": "*.evil.example", "path_allowlist": ["/"]}
JSON
((RC == 1)) && grep -q 'proposal: host: "\*.evil.example" is a wildcard' "$BR_TMP/err" ||
  fail "a wildcard host from stdin: rc $RC: $(outerr)"
echo '{"host": "ok.example.com", "path_allowlist": ["/fine", "relative"]}' >"$BR_TMP/badpath.json"
brx add-route ap "$BR_TMP/badpath.json"
((RC == 1)) && grep -q 'proposal: path_allowlist\[1\]: "relative" does not start with "/"' "$BR_TMP/err" ||
  fail "a path without / from a file: rc $RC: $(outerr)"
brx add-route ap --host '*.evil.example' --path / --json
((RC == 1)) || fail "a wildcard host from flags: rc $RC: $(outerr)"
json_assert "$BR_TMP/out" '
assert d["outcome"] == "refused" and d["fragment"] is None and d["slot"] is None, d
assert "host" in d["error"] and "wildcard" in d["error"], d["error"]
' || fail "a refused add-route --json: $(outerr)"
brx add-route ap - <<'JSON'
{"host": "ok.example.com", "paths": ["/"]}
JSON
((RC == 1)) && grep -q 'paths: unknown key, expected host, path_allowlist, auth or id' "$BR_TMP/err" ||
  fail "a proposal with an unknown key: rc $RC: $(outerr)"
brx add-route ap --host ok.example.com --path / --id flags1
((RC == 1)) && grep -q "$d/~approval-flags1.json: an approval with id flags1 exists already" "$BR_TMP/err" ||
  fail "an approval id used twice: rc $RC: $(outerr)"
[[ $(tree_sum "$d") == "$before" ]] || fail "a refused proposal changed the fragments"

# --- remove-route takes an approved host back --------------------------------
brx remove-route ap foo.example.com
((RC == 0)) || fail "remove-route of an approved host: rc $RC: $(outerr)"
[[ ! -e $d/~approval-stdin1.json ]] || fail "remove-route left the approval of foo.example.com"
brx once ap
((RC == 0)) || fail "once after remove-route: rc $RC: $(outerr)"
! grep -q '"host": "foo.example.com"' "$(eg_file ap)" || fail "egress still routes foo.example.com"
wait_for sidecar_has "$(eg_log ap)" reload "$(sha256_of "$(eg_file ap)")" ok

# --- refused for a host an operator fragment grants --------------------------
before=$(tree_sum "$d")
brx remove-route ap pypi.org
((RC == 1)) && grep -q "$d/00-adopted.json: an operator fragment grants pypi.org" "$BR_TMP/err" ||
  fail "remove-route of an adopted host: rc $RC: $(outerr)"
[[ $(tree_sum "$d") == "$before" ]] || fail "a refused remove-route changed the fragments"
printf 'routes:\n  - {host: op.example.com, path_allowlist: [/op/]}\n' >"$BR_TMP/20-operator.yaml"
brx apply ap "$BR_TMP/20-operator.yaml"
((RC == 0)) || fail "apply 20-operator.yaml: rc $RC: $(outerr)"
brx add-route ap --host op.example.com --path /extra/ --id opx
((RC == 0)) || fail "add-route of an operator's host: rc $RC: $(outerr)"
before=$(tree_sum "$d")
brx remove-route ap op.example.com
((RC == 1)) && grep -q "$d/20-operator.yaml: an operator fragment grants op.example.com" "$BR_TMP/err" ||
  fail "remove-route of a host an applied fragment grants: rc $RC: $(outerr)"
[[ $(tree_sum "$d") == "$before" ]] || fail "a refused remove-route changed the fragments (the approval opx too)"

# A path only the approval grants can be taken back from the operator's host.
brx remove-route ap op.example.com --path /extra/
((RC == 0)) || fail "remove-route --path of an approved path of an operator's host: rc $RC: $(outerr)"
[[ ! -e $d/~approval-opx.json && -e $d/20-operator.yaml ]] || fail "remove-route --path /extra/: $(ls -A "$d")"

# --- --path takes one path back; revoke removes one approval -----------------
brx add-route ap --host multi.example.com --path /p --path /q --id multi
((RC == 0)) || fail "add-route multi: rc $RC: $(outerr)"
brx remove-route ap multi.example.com --path /q
((RC == 0)) || fail "remove-route --path: rc $RC: $(outerr)"
json_assert "$d/~approval-multi.json" 'assert d == {"routes": [{"host": "multi.example.com", "path_allowlist": ["/p"]}]}, d' ||
  fail "remove-route --path: $(cat "$d/~approval-multi.json")"
brx once ap
((RC == 0)) || fail "once after remove-route --path: rc $RC: $(outerr)"
python3 -c 'import json, sys
r = [r for r in json.load(open(sys.argv[1]))["routes"] if r["host"] == "multi.example.com"]
assert r == [{"host": "multi.example.com", "path_allowlist": ["/p"]}], r' "$(eg_file ap)" ||
  fail "egress after remove-route --path: $(cat "$(eg_file ap)")"
brx revoke ap multi
((RC == 0)) || fail "revoke: rc $RC: $(outerr)"
[[ ! -e $d/~approval-multi.json ]] || fail "revoke left ~approval-multi.json"
brx once ap
! grep -q 'multi.example.com' "$(eg_file ap)" || fail "egress still routes a revoked approval"
wait_for sidecar_has "$(eg_log ap)" reload "$(sha256_of "$(eg_file ap)")" ok
before=$(tree_sum "$d")
brx revoke ap nosuch
((RC == 1)) && grep -q "$d/~approval-nosuch.json: no approval nosuch for ap" "$BR_TMP/err" ||
  fail "revoke of an unknown id: rc $RC: $(outerr)"
[[ $(tree_sum "$d") == "$before" ]] || fail "a refused revoke changed the fragments"

# --- a second source: its hosts belong to someone else -----------------------
bottles_config "$cfg" <<YAML
sources: ["{state_dir}/{slug}/routes.d", "$BR_TMP/git/{slug}"]
YAML
mkdir -p "$BR_TMP/git/ap"
printf 'routes:\n  - {host: git.example.com, path_allowlist: [/]}\n  - {host: git2.example.com, path_allowlist: [/]}\n' \
  >"$BR_TMP/git/ap/g.yaml"
brx add-route ap --host git.example.com --path /extra/ --id gitx
((RC == 0)) || fail "add-route of a host another source grants: rc $RC: $(outerr)"
before=$(tree_sum "$d")
git_before=$(tree_sum "$BR_TMP/git")
for h in git.example.com git2.example.com; do
  brx remove-route ap $h
  ((RC == 1)) && grep -q "$BR_TMP/git/ap/g.yaml: grants $h from a source this tool does not own" "$BR_TMP/err" ||
    fail "remove-route of $h, which another source grants: rc $RC: $(outerr)"
done
[[ $(tree_sum "$d") == "$before" && $(tree_sum "$BR_TMP/git") == "$git_before" ]] ||
  fail "a refused remove-route changed fragments"

# --- the audit log names the command, the actor and the approval -------------
audit_has add-route alice stdin1 EGRESS_TOKEN_1 || fail "no audit record of add-route by alice (--actor): $(cat "$audit")"
audit_has add-route bob flags1 EGRESS_TOKEN_4 || fail "no audit record of add-route by bob (--actor)"
USER=carol brx add-route ap --host user.example.com --path / --id byuser
((RC == 0)) || fail "add-route byuser: rc $RC: $(outerr)"
audit_has add-route carol byuser || fail "no audit record of add-route by \$USER carol: $(tail -n 3 "$audit")"
audit_has revoke tester multi || fail "no audit record of revoke: $(grep revoke "$audit")"

echo ok
