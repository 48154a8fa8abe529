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

echo ok
