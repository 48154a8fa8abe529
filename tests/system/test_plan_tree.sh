#!/usr/bin/env bash
# plan --tree: what publishing a candidate repository tree would change on
# this host, against its live files and local fragments, for its own
# bottles only; nothing is written or signalled.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
bottles_config "$cfg" <<YAML
sources:
  - "{state_dir}/{slug}/routes.d"
  - "$BR_TMP/sync/current/bottles/{slug}"
  - "$BR_TMP/sync/current/hosts/web-1/bottles/{slug}"
YAML
br() { "$BR_BIN" --config "$cfg" "$@"; }

# fragment FILE HOST...: a fragment allowing / on each HOST.
fragment() {
  local file=$1 h
  shift
  mkdir -p "$(dirname "$file")"
  {
    echo "routes:"
    for h in "$@"; do
      echo "  - {host: $h, path_allowlist: [/]}"
    done
  } >"$file"
}

# The published tree: alpha and beta run here, gamma elsewhere.
live=$BR_TMP/sync/rev-1
fragment "$live/bottles/alpha/10.yaml" a.example.org
fragment "$live/bottles/beta/10.yaml" b.example.org
fragment "$live/bottles/gamma/10.yaml" g.example.org
fragment "$live/hosts/web-1/bottles/alpha/50.yaml" web1.example.org
ln -s rev-1 "$BR_TMP/sync/current"
for slug in alpha beta; do
  bottle_create "$slug"
  bottle_start "$slug"
done
bottle_fragment alpha 00-local.yaml <<'YAML'
routes:
  - {host: local.example.org, path_allowlist: [/]}
YAML
br once >/dev/null || fail "once did not converge the published tree"

# snapshot: every byte a plan must leave alone (live files, records, audit
# log, sidecar logs).
snapshot() {
  (cd "$BR_TMP" && find state logs -type f -print0 | sort -z | xargs -0 sha256sum)
}
snapshot >"$BR_TMP/before"

# 1. A candidate that changes alpha (a host in web-1's folder), leaves beta
# as it is and changes gamma, which this host does not run.
cand=$BR_TMP/candidate
cp -r "$live" "$cand"
fragment "$cand/hosts/web-1/bottles/alpha/50.yaml" web1.example.org new.example.org
fragment "$cand/bottles/gamma/10.yaml" g2.example.org
rc=0
br plan --tree "$cand" >"$BR_TMP/out" 2>"$BR_TMP/err" || rc=$?
((rc == 2)) || fail "plan --tree of a changed tree exited $rc, expected 2: $(cat "$BR_TMP/out" "$BR_TMP/err")"
grep -q '^alpha: changes' "$BR_TMP/out" || fail "alpha's change not shown: $(cat "$BR_TMP/out")"
grep -q 'new.example.org' "$BR_TMP/out" || fail "the new host is not named: $(cat "$BR_TMP/out")"
grep -q '^beta: converged' "$BR_TMP/out" || fail "beta should have nothing to do: $(cat "$BR_TMP/out")"
not grep -q gamma "$BR_TMP/out" || fail "the plan names a bottle this host does not run: $(cat "$BR_TMP/out")"
# The local fragment stays in the merge: its host is not shown as removed.
not grep -q 'local.example.org' "$BR_TMP/out" || fail "the local fragment is not kept: $(cat "$BR_TMP/out")"
snapshot | diff "$BR_TMP/before" - >&2 || fail "plan --tree changed a file"
[[ $(readlink "$BR_TMP/sync/current") == rev-1 ]] || fail "plan --tree touched the checkout"

# 2. The same with the checkout named, and for one slug.
rc=0
br plan --tree "$cand" --source-root "$BR_TMP/sync/current" alpha >"$BR_TMP/out2" || rc=$?
((rc == 2)) || fail "plan --tree --source-root exited $rc, expected 2"
grep -v '^beta' "$BR_TMP/out" | diff - "$BR_TMP/out2" >&2 || fail "--source-root planned otherwise"

# 3. The published tree itself: nothing to do.
br plan --tree "$live" >"$BR_TMP/out" || fail "plan --tree of the live tree exited $?: $(cat "$BR_TMP/out")"

# 4. An invalid candidate: exit 1, the finding shown, nothing written.
fragment "$cand/bottles/beta/20.yaml" '"*.example.org"'
rc=0
br plan --tree "$cand" beta >"$BR_TMP/out" 2>"$BR_TMP/err" || rc=$?
((rc == 1)) || fail "plan --tree of an invalid tree exited $rc, expected 1"
grep -q "^$cand/bottles/beta/20.yaml:2:.*wildcard" "$BR_TMP/err" || fail "no finding: $(cat "$BR_TMP/err")"
snapshot | diff "$BR_TMP/before" - >&2 || fail "plan --tree of an invalid tree changed a file"

# 5. Sources that do not follow the layout need --source-root.
cfg2=$BR_TMP/br2.yaml
bottles_config "$cfg2" <<YAML
sources: ["{state_dir}/{slug}/routes.d", "$BR_TMP/sync/current/{slug}"]
YAML
rc=0
"$BR_BIN" --config "$cfg2" plan --tree "$cand" alpha >/dev/null 2>"$BR_TMP/err" || rc=$?
((rc == 1)) && grep -q "alpha: none of its sources lies in the git checkout" "$BR_TMP/err" ||
  fail "an unlaid-out source was not refused (exit $rc): $(cat "$BR_TMP/err")"
rc=0
"$BR_BIN" --config "$cfg2" plan --tree "$cand/bottles" --source-root "$BR_TMP/sync/current" alpha \
  >"$BR_TMP/out" || rc=$?
((rc == 2)) && grep -q '^alpha: changes' "$BR_TMP/out" || fail "--source-root with another layout (exit $rc)"
rc=0
br plan --source-root /x 2>/dev/null || rc=$?
((rc == 64)) || fail "--source-root without --tree exited $rc, expected 64"

echo ok
