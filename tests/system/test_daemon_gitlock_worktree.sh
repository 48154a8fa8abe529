#!/usr/bin/env bash
# The daemon, scenario "git checkout in progress" where .git is a file: a
# source directory inside a linked worktree (`git worktree add`, .git holds
# an absolute "gitdir: …/worktrees/NAME") or a submodule (.git holds a
# relative "gitdir: ../.git/modules/NAME") is held back while the lock git
# really takes, index.lock in that git dir, exists. Then a real `git
# checkout` of a big commit, stopped halfway by a smudge filter that waits
# for the test: nothing of it is published until git is done, then all of it.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
command -v git >/dev/null || {
  echo "git not installed; skipping"
  exit 77
}
# Git from the test alone: no user or system config, a fixed identity.
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME=test GIT_AUTHOR_EMAIL=test@example.org GIT_COMMITTER_NAME=test GIT_COMMITTER_EMAIL=test@example.org

fragment() { # fragment FILE HOST: one route to HOST
  printf 'routes:\n  - host: %s\n    path_allowlist: [/]\n' "$2" >"$1"
}

# The fleet repository: one folder per bottle. A bare origin, as a git
# server or a fleet's mirror has it.
scratch=$BR_TMP/scratch
git init -q -b main "$scratch"
mkdir "$scratch/alpha"
fragment "$scratch/alpha/a.yaml" a.example.org
git -C "$scratch" add -A
git -C "$scratch" commit -qm "alpha: a"
git clone -q --bare "$scratch" "$BR_TMP/origin.git"
# A linked worktree of the bare repository, and the same repository as a
# submodule of another one.
git -C "$BR_TMP/origin.git" worktree add -q "$BR_TMP/wt" main
git init -q -b main "$BR_TMP/parent"
git -C "$BR_TMP/parent" -c protocol.file.allow=always submodule add -q "$BR_TMP/origin.git" fleet
[[ -f $BR_TMP/wt/.git && $(<"$BR_TMP/wt/.git") == "gitdir: /"* ]] || fail "the worktree's .git is not a file with an absolute gitdir"
[[ -f $BR_TMP/parent/fleet/.git && $(<"$BR_TMP/parent/fleet/.git") == "gitdir: ../"* ]] ||
  fail "the submodule's .git is not a file with a relative gitdir"
wt_gitdir=$(git -C "$BR_TMP/wt" rev-parse --absolute-git-dir)
sub_gitdir=$(git -C "$BR_TMP/parent/fleet" rev-parse --absolute-git-dir)
[[ $wt_gitdir == "$BR_TMP/origin.git/worktrees/wt" ]] || fail "unexpected worktree git dir $wt_gitdir"
[[ $sub_gitdir == "$BR_TMP/parent/.git/modules/fleet" ]] || fail "unexpected submodule git dir $sub_gitdir"

cfg=$BR_TMP/br.yaml
bottles_config "$cfg" <<YAML
sources:
  - "{state_dir}/{slug}/routes.d"
  - "$BR_TMP/wt/{slug}"
  - "$BR_TMP/parent/fleet/{slug}"
YAML
bottle_create alpha
bottle_start alpha
start_daemon "$cfg"

# hosts_are HOST...: alpha's egress file routes exactly these hosts, sorted.
hosts_are() {
  python3 - "$(eg_file alpha)" "$@" <<'PY'
import json, sys
try:
    hosts = sorted(r["host"] for r in json.load(open(sys.argv[1]))["routes"])
except (OSError, ValueError):
    sys.exit(1)
sys.exit(0 if hosts == sorted(sys.argv[2:]) else 1)
PY
}
has_host() { grep -q "\"host\": \"$1\"" "$(eg_file alpha)"; }
phase_is() { [[ $(status_field alpha phase) == "$1" ]]; }
wait_for slug_converged alpha
hosts_are a.example.org || fail "the first pass did not publish the worktree's fragment"

# held_by LOCK FRAGMENT HOST: with LOCK taken as git takes it, a new
# fragment naming HOST is held back, the status naming LOCK; once the lock
# goes, HOST is published.
held_by() {
  local lock=$1 frag=$2 host=$3
  shift 3
  local before
  before=$(sha256_of "$(eg_file alpha)")
  : >"$lock"
  fragment "$frag" "$host"
  # Either outcome ends the wait: held back (right) or published (wrong).
  held_or_published() { phase_is waiting || has_host "$host"; }
  wait_for held_or_published
  has_host "$host" && fail "$host was published while git held $lock"
  [[ $(status_field alpha message) == *"$lock"* ]] || fail "alpha waits without naming $lock: $(daemon_status alpha)"
  [[ $(sha256_of "$(eg_file alpha)") == "$before" ]] || fail "the egress file changed while git held $lock"
  rm "$lock"
  wait_for has_host "$host"
  wait_for slug_converged alpha
}

# 1. A linked worktree: git takes index.lock in origin.git/worktrees/wt.
held_by "$wt_gitdir/index.lock" "$BR_TMP/wt/alpha/w.yaml" w.example.org
# 2. A submodule, whose .git names its git dir relative to itself.
held_by "$sub_gitdir/index.lock" "$BR_TMP/parent/fleet/alpha/s.yaml" s.example.org
hosts_are a.example.org w.example.org s.example.org || fail "alpha does not route what its sources say"
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"

# 3. A real checkout of a big commit, stopped halfway. A smudge filter
#    (set for one file in the repository's info/attributes, which worktrees
#    share) waits, once armed, until the test releases it: git has written
#    the files before that one and holds index.lock meanwhile.
big=()
git -C "$scratch" checkout -qb big
for i in $(seq -w 0 199); do
  fragment "$scratch/alpha/b-$i.yaml" "b-$i.example.org"
  big+=("b-$i.example.org")
done
fragment "$scratch/alpha/m-hold.yaml" m.example.org
for i in $(seq -w 0 49); do
  fragment "$scratch/alpha/z-$i.yaml" "z-$i.example.org"
  big+=("z-$i.example.org")
done
git -C "$scratch" add -A
git -C "$scratch" commit -qm "alpha: a big change"
git -C "$scratch" push -q "$BR_TMP/origin.git" big
cat >"$BR_TMP/hold.sh" <<SH
#!/bin/sh
# smudge filter: copies stdin; when armed, first says so and waits (30 s at most).
if [ -e "$BR_TMP/armed" ]; then
  : >"$BR_TMP/holding"
  n=0
  while [ ! -e "$BR_TMP/release" ] && [ \$n -lt 1500 ]; do sleep 0.02; n=\$((n + 1)); done
fi
exec cat
SH
chmod +x "$BR_TMP/hold.sh"
git -C "$BR_TMP/origin.git" config filter.hold.smudge "$BR_TMP/hold.sh"
mkdir -p "$BR_TMP/origin.git/info"
echo "alpha/m-hold.yaml filter=hold" >"$BR_TMP/origin.git/info/attributes"
egress_writes() { grep -c '"sidecar":"egress"' "$BR_TMP/state/.reconciler/audit.jsonl" || true; }
writes_before=$(egress_writes)
before=$(sha256_of "$(eg_file alpha)")
: >"$BR_TMP/armed"
git -C "$BR_TMP/wt" checkout -q big &
checkout_pid=$!
br_track "$checkout_pid"
wait_for -t 30 test -e "$BR_TMP/holding"
[[ -e $wt_gitdir/index.lock ]] || fail "git does not hold the worktree's index.lock during the checkout"
[[ -e $BR_TMP/wt/alpha/b-199.yaml && ! -e $BR_TMP/wt/alpha/z-00.yaml ]] ||
  fail "the checkout is not stopped halfway"
held_or_published() { phase_is waiting || has_host b-000.example.org; }
wait_for held_or_published
has_host b-000.example.org && fail "half a checkout was published"
[[ $(status_field alpha message) == *"$wt_gitdir/index.lock"* ]] ||
  fail "alpha waits without naming the worktree's lock: $(daemon_status alpha)"
[[ $(sha256_of "$(eg_file alpha)") == "$before" ]] || fail "the egress file changed during the checkout"
: >"$BR_TMP/release"
reap "$checkout_pid"
((REAP_STATUS == 0)) || fail "git checkout exited with status $REAP_STATUS"
wait_for hosts_are a.example.org w.example.org s.example.org m.example.org "${big[@]}"
wait_for slug_converged alpha
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
# The whole commit in one write: no converge saw half of it.
writes=$(($(egress_writes) - writes_before))
((writes == 1)) || fail "the checkout took $writes egress writes, expected 1"

stop_daemon
echo ok
