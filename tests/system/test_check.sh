#!/usr/bin/env bash
# check: validates fragments as the daemon would before anything is
# published. `check FILE...` bounds the merge of the files by
# limits.max_routes, not only each file.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
br_tmpdir
br() { "$BR_BIN" "$@"; }

# hosts FILE FROM TO: a fragment with the distinct hosts hFROM..hTO-1.
hosts() {
  {
    echo "routes:"
    for ((i = $2; i < $3; i++)); do
      echo "  - {host: h$i.example.org, path_allowlist: [/]}"
    done
  } >"$1"
}

# 1. Two fragments, each within limits.max_routes (4096), 4097 hosts together:
# the bottle they make is refused, as the daemon refuses it, and the message
# names the file that takes it past the bound.
hosts "$BR_TMP/a.yaml" 0 2049
hosts "$BR_TMP/b.yaml" 2049 4097
rc=0
br check "$BR_TMP/a.yaml" "$BR_TMP/b.yaml" >"$BR_TMP/out" 2>"$BR_TMP/err" || rc=$?
((rc == 1)) || fail "check of 4097 hosts in two files exited $rc, expected 1: $(cat "$BR_TMP/out")"
grep -qx "$BR_TMP/b.yaml:1:1: routes: takes the slug past 4096 distinct hosts, expected fewer routes across its fragments" \
  "$BR_TMP/err" || fail "unexpected message: $(cat "$BR_TMP/err")"
[[ ! -s $BR_TMP/out ]] || fail "an invalid check printed a summary: $(cat "$BR_TMP/out")"
# Each alone is valid, and so are both when they share hosts (4096 in all).
br check "$BR_TMP/a.yaml" >/dev/null || fail "a.yaml alone was refused"
hosts "$BR_TMP/b.yaml" 2048 4096
br check "$BR_TMP/a.yaml" "$BR_TMP/b.yaml" >"$BR_TMP/out" || fail "4096 hosts in two files were refused"
grep -qx "2 fragments valid, 4097 routes, 4096 hosts" "$BR_TMP/out" || fail "summary: $(cat "$BR_TMP/out")"
# The bound is the config's.
echo "limits: {max_routes: 3000}" >"$BR_TMP/br.yaml"
rc=0
br --config "$BR_TMP/br.yaml" check "$BR_TMP/a.yaml" "$BR_TMP/b.yaml" >/dev/null 2>"$BR_TMP/err" || rc=$?
((rc == 1)) && grep -q "b.yaml:1:1: routes: takes the slug past 3000 distinct hosts" "$BR_TMP/err" ||
  fail "limits.max_routes 3000 not applied to the merge (exit $rc): $(cat "$BR_TMP/err")"

# 2. The example repository of contrib/gitops is valid.
example=$BR_TESTS/../contrib/gitops/example
br check --tree "$example" >"$BR_TMP/out" 2>"$BR_TMP/err" || fail "the example repository has findings: $(cat "$BR_TMP/err")"
grep -qxF "$example: 2 bottles, 1 host folder (1 host merge), 5 fragments, all valid" "$BR_TMP/out" ||
  fail "summary: $(cat "$BR_TMP/out")"
[[ ! -s $BR_TMP/err ]] || fail "a valid tree printed on stderr: $(cat "$BR_TMP/err")"

# 3. A tree with one problem of each kind: every one is a line, once,
# though the host's merge of ci-agent reads its fleet folder again.
tree=$BR_TMP/repo
cp -r "$example" "$tree"
cd "$tree"
printf 'routes:\n  - host: "*.example.org"\n    path_allowlist: [/]\n' >bottles/docs-writer/30-wild.yaml
# A conflict between the fleet's folder and a host's: the daemon would keep
# the first auth and only warn.
printf 'routes:\n  - host: api.github.com\n    path_allowlist: [/x]\n    auth_scheme: Basic\n    token_env: EGRESS_TOKEN_9\n' \
  >hosts/build-1/bottles/ci-agent/60-conflict.yaml
# 4097 hosts over two fragments of one bottle (a ',' in a name, for GitHub)
mkdir bottles/big
hosts bottles/big/a.yaml 0 2049
hosts bottles/big/b,c.yaml 2049 4097
echo 'routes: []' >bottles/stray.yaml
mkdir "bottles/Not A Slug" bottles/docs-writer/old hosts/build-2
ln -s /etc bottles/escape
ln -s /etc/passwd bottles/ci-agent/99-passwd.yaml
rc=0
br check --tree . >"$BR_TMP/out" 2>"$BR_TMP/err" || rc=$?
((rc == 1)) || fail "check --tree of a bad tree exited $rc"
real=$(realpath .)
printf '%s\n' \
  'bottles/Not A Slug:1:1: (folder): not a valid slug, expected [A-Za-z0-9][A-Za-z0-9_.-]* of at most 128 characters; no host reads this folder' \
  'bottles/docs-writer/old:1:1: (folder): a folder inside a bottle folder is never read, expected its fragments directly in bottles/docs-writer/' \
  'bottles/escape:1:1: (folder): leads outside the repository (to /etc), expected a folder of the repository; it is not read' \
  'bottles/stray.yaml:1:1: (file): a fragment outside a bottle folder is never read, expected bottles/<slug>/stray.yaml' \
  "hosts/build-2:1:1: (folder): holds no bottles/ folder, expected hosts/build-2/bottles/<slug>/ with that host's fragments" \
  'bottles/big/b,c.yaml:2049:1: routes[2047].host: takes the bottle past 4096 distinct hosts, expected at most 4096 across its fragments (limits.max_routes)' \
  "bottles/ci-agent/99-passwd.yaml:1:1: (file): symlink leads outside its source directory (to /etc/passwd), expected a link inside $real/bottles/ci-agent" \
  'bottles/docs-writer/30-wild.yaml:2:11: routes[0].host: "*.example.org" is a wildcard, expected an exact host name' \
  >"$BR_TMP/want"
diff "$BR_TMP/want" "$BR_TMP/err" >&2 || fail "check --tree findings differ (< want, > got)"
grep -qxF ".: 8 findings, 3 of 4 bottle merges invalid" "$BR_TMP/out" || fail "summary: $(cat "$BR_TMP/out")"
# With the bad fragment gone, the host's merge shows its conflict.
rm bottles/ci-agent/99-passwd.yaml
rc=0
br check --tree . >/dev/null 2>"$BR_TMP/err" || rc=$?
((rc == 1)) || fail "a merge conflict was not a finding (exit $rc)"
grep -qxF 'hosts/build-1/bottles/ci-agent/60-conflict.yaml:2:1: host api.github.com: auth Basic/EGRESS_TOKEN_9 ignored, auth already set by bottles/ci-agent/10-github.yaml:3 (the first fragment that names a host decides its auth)' \
  "$BR_TMP/err" || fail "no conflict finding: $(cat "$BR_TMP/err")"

# 4. GitHub annotations: on stdout, where the runner reads them; the file is
# a property, so its ',' is escaped.
rc=0
br check --tree . --format github >"$BR_TMP/out" 2>"$BR_TMP/err" || rc=$?
((rc == 1)) || fail "check --format github exited $rc"
grep -qxF '::error file=bottles/big/b%2Cc.yaml,line=2049,col=1::routes[2047].host: takes the bottle past 4096 distinct hosts, expected at most 4096 across its fragments (limits.max_routes)' \
  "$BR_TMP/out" || fail "no annotation for the limit: $(cat "$BR_TMP/out")"
grep -qxF '::error file=bottles/docs-writer/30-wild.yaml,line=2,col=11::routes[0].host: "*.example.org" is a wildcard, expected an exact host name' \
  "$BR_TMP/out" || fail "no annotation for the wildcard: $(cat "$BR_TMP/out")"
(($(grep -c '^::error file=' "$BR_TMP/out") == 8)) || fail "expected 8 annotations: $(cat "$BR_TMP/out")"
[[ ! -s $BR_TMP/err ]] || fail "annotations went to stderr: $(cat "$BR_TMP/err")"
# check FILE... annotates too; a merge conflict stays a warning there.
rc=0
br check bottles/ci-agent/10-github.yaml hosts/build-1/bottles/ci-agent/60-conflict.yaml --format github \
  >"$BR_TMP/out" || rc=$?
((rc == 0)) || fail "check FILE... with a conflict exited $rc"
grep -qxF '::warning file=hosts/build-1/bottles/ci-agent/60-conflict.yaml,line=2,col=1::host api.github.com: auth Basic/EGRESS_TOKEN_9 ignored, auth already set by bottles/ci-agent/10-github.yaml:3 (the first fragment that names a host decides its auth)' \
  "$BR_TMP/out" || fail "no warning annotation: $(cat "$BR_TMP/out")"
cd "$BR_TMP"

# 5. Usage, and trees that are not repositories.
rc=0
br check --tree "$tree" "$BR_TMP/a.yaml" 2>/dev/null || rc=$?
((rc == 64)) || fail "check --tree DIR FILE exited $rc, expected 64"
rc=0
br check --tree "$BR_TMP/nothing" 2>/dev/null || rc=$?
((rc == 1)) || fail "check --tree of a missing directory exited $rc, expected 1"
mkdir "$BR_TMP/empty"
rc=0
br check --tree "$BR_TMP/empty" >/dev/null 2>"$BR_TMP/err" || rc=$?
((rc == 1)) && grep -q "holds neither bottles/ nor hosts/" "$BR_TMP/err" ||
  fail "a tree without the layout was not a finding (exit $rc): $(cat "$BR_TMP/err")"
rc=0
br --state-dir "$BR_TMP" plan --format github 2>/dev/null || rc=$?
((rc == 64)) || fail "--format outside check exited $rc, expected 64"

echo ok
