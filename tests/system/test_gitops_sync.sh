#!/usr/bin/env bash
# contrib/gitops/bottle-gitops-sync on its own: the loop (--interval)
# publishes a push without being asked and stops at SIGTERM; a fetch that
# fails is reported without the URL's credentials and leaves the served
# commit alone, and so does a check that cannot run, without refusing the
# commit; usage errors exit 64; the systemd service and timer pass
# `systemd-analyze verify`; the CI script checks a commit's tree.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
br_tmpdir
for tool in git jq; do
  command -v "$tool" >/dev/null || fail "$tool is missing: contrib/setup.sh installs it"
done
contrib=$(realpath "$here/../../contrib/gitops")
sync=$contrib/bottle-gitops-sync
origin=$BR_TMP/origin.git work=$BR_TMP/work root=$BR_TMP/sync
git init --quiet --bare --initial-branch=main "$origin"
git init --quiet --initial-branch=main "$work"
cp -r "$contrib/example/." "$work/"
g() { git -C "$work" -c user.name=Operator -c user.email=op@example.org "$@"; }
g add -A
g commit --quiet -m example
g push --quiet "$origin" HEAD:main
served() { readlink "$root/current" 2>/dev/null || true; }
serves_head() { [[ $(served) == "rev-$(g rev-parse HEAD)" ]]; }
outcome_is() { [[ $(jq -r .outcome "$root/status.json" 2>/dev/null) == "$1" ]]; }

# 1. The loop publishes the first commit, then a later push on its own.
"$sync" --repo "$origin" --root "$root" --bin "$BR_BIN" --interval 1 2>"$BR_TMP/loop.log" &
loop=$!
br_track "$loop"
wait_for serves_head
printf 'routes:\n  - {host: later.example.org, path_allowlist: [/]}\n' >"$work/bottles/ci-agent/30-later.yaml"
g add -A
g commit --quiet -m later
g push --quiet "$origin" HEAD:main
wait_for serves_head
wait_for outcome_is unchanged
jq -e --arg sha "$(g rev-parse HEAD)" '.served == $sha and .tried == $sha and .error == null and
  (.time | test("^[0-9-]{10}T[0-9:.]{12}Z$")) and (.served_since | test("Z$"))' "$root/status.json" >/dev/null ||
  fail "status: $(cat "$root/status.json")"
[[ -e $root/current/bottles/ci-agent/30-later.yaml ]] || fail "the served tree lacks the pushed file"
# SIGTERM ends the loop while it sleeps, at once.
kill -TERM "$loop"
wait_for pid_gone "$loop"
reap "$loop"
((REAP_STATUS == 0)) || fail "the loop exited $REAP_STATUS after SIGTERM: $(cat "$BR_TMP/loop.log")"

# 2. A fetch that fails: the error is reported, the token is not, and the
# host keeps serving what it served.
before=$(served)
rc=0
"$sync" --repo "https://robot:s3cr3t-token@127.0.0.1:9/bottles.git" --root "$root" --bin "$BR_BIN" \
  --metrics-file "$BR_TMP/sync.prom" 2>"$BR_TMP/err" || rc=$?
((rc == 1)) || fail "a failed fetch exited $rc"
[[ $(served) == "$before" ]] || fail "a failed fetch changed the served commit"
jq -e '.outcome == "failed" and (.error | startswith("fetch failed")) and .repo == "https://127.0.0.1:9/bottles.git"' \
  "$root/status.json" >/dev/null || fail "status: $(cat "$root/status.json")"
not grep -q s3cr3t "$root/status.json" "$BR_TMP/err" "$BR_TMP/sync.prom" || fail "the token was shown"
grep -qx 'bottle_gitops_sync_ok{repo="https://127.0.0.1:9/bottles.git",branch="main"} 0' "$BR_TMP/sync.prom" ||
  fail "metrics: $(cat "$BR_TMP/sync.prom")"

# A check that cannot run says nothing about the commit: the run failed, the
# commit is not refused, and the next run publishes it.
printf 'routes:\n  - {host: next.example.org, path_allowlist: [/]}\n' >"$work/bottles/ci-agent/31-next.yaml"
g add -A
g commit --quiet -m next
g push --quiet "$origin" HEAD:main
rc=0
"$sync" --repo "$origin" --root "$root" --bin "$BR_TMP/no-such-binary" 2>/dev/null || rc=$?
((rc == 1)) && [[ $(served) == "$before" ]] || fail "a check that could not run (exit $rc) published"
jq -e --arg sha "$(g rev-parse HEAD)" '.outcome == "failed" and .tried == $sha and
  (.error | startswith("check could not run (exit 127)"))' "$root/status.json" >/dev/null ||
  fail "status: $(cat "$root/status.json")"
"$sync" --repo "$origin" --root "$root" --bin "$BR_BIN" 2>/dev/null || fail "the next run did not publish"
serves_head || fail "the next run did not publish the head"

# 3. Usage.
for args in "" "--repo $origin --interval 1.5" "--repo $origin --branch -x" "--repo $origin --bogus"; do
  rc=0
  # shellcheck disable=SC2086 # the arguments are words
  "$sync" $args >/dev/null 2>&1 || rc=$?
  ((rc == 64)) || fail "bottle-gitops-sync $args exited $rc, expected 64"
done

# 4. The CI script, on the working tree and on a commit.
BOTTLE_RECONCILER=$BR_BIN "$contrib/ci/check-tree.sh" "$work" >/dev/null || fail "check-tree.sh refused the example"
printf 'routes:\n  - {host: "*.example.org", path_allowlist: [/]}\n' >"$work/bottles/ci-agent/40-wild.yaml"
g add -A
g commit --quiet -m wild
rc=0
BOTTLE_RECONCILER=$BR_BIN "$contrib/ci/check-tree.sh" "$work" --commit HEAD --format github >"$BR_TMP/out" || rc=$?
((rc == 1)) && grep -q '^::error file=bottles/ci-agent/40-wild.yaml,line=2,' "$BR_TMP/out" ||
  fail "check-tree.sh --commit HEAD (exit $rc): $(cat "$BR_TMP/out")"
BOTTLE_RECONCILER=$BR_BIN "$contrib/ci/check-tree.sh" "$work" --commit HEAD~1 >/dev/null ||
  fail "check-tree.sh refused HEAD~1"
if python3 -c 'import yaml' 2>/dev/null; then
  python3 -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' "$contrib/ci/github-workflow.yaml" ||
    fail "the GitHub workflow is not YAML"
fi

# 5. The systemd units.
if command -v systemd-analyze >/dev/null; then
  sed "s|/usr/local/bin/bottle-gitops-sync|$sync|; s|^EnvironmentFile=.*|EnvironmentFile=$contrib/bottle-gitops-sync.env|" \
    "$contrib/bottle-gitops-sync.service" >"$BR_TMP/bottle-gitops-sync.service"
  cp "$contrib/bottle-gitops-sync.timer" "$BR_TMP/"
  out=$(cd "$BR_TMP" && systemd-analyze verify --man=no bottle-gitops-sync.service bottle-gitops-sync.timer 2>&1) ||
    fail "systemd-analyze verify: $out"
  if grep -F "bottle-gitops-sync." <<<"$out"; then
    fail "systemd-analyze verify reported: $out"
  fi
fi
echo ok
