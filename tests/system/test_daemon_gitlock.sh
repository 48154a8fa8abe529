#!/usr/bin/env bash
# The daemon, scenario "git checkout in progress": a slug whose source lies
# in a git checkout holding .git/index.lock is held back (status: waiting,
# with the reason) until the lock goes; a lock older than the deadline
# (10 s) is treated as stale: the slug converges anyway, and the daemon
# says so once. A bottle held back during the first pass and then removed
# does not keep the daemon from becoming ready.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
# Each bottle has its own checkout, so one's lock does not hold the other.
bottles_config "$cfg" <<YAML
sources:
  - "{state_dir}/{slug}/routes.d"
  - "$BR_TMP/repo-{slug}/bottles"
YAML
for slug in alpha beta gamma; do
  mkdir -p "$BR_TMP/repo-$slug/.git" "$BR_TMP/repo-$slug/bottles"
  bottle_create "$slug"
done
bottle_start alpha
# beta and gamma start held back: a checkout was in progress when the daemon started.
touch "$BR_TMP/repo-beta/.git/index.lock" "$BR_TMP/repo-gamma/.git/index.lock"
spawn_daemon "$cfg"

# hosts_are SLUG HOST...: SLUG's egress file routes exactly these hosts, in this order.
hosts_are() {
  python3 - "$(eg_file "$1")" "${@:2}" <<'PY'
import json, sys
try:
    hosts = [r["host"] for r in json.load(open(sys.argv[1]))["routes"]]
except (OSError, ValueError):
    sys.exit(1)
sys.exit(0 if hosts == sys.argv[2:] else 1)
PY
}
phase_is() { [[ $(status_field "$1" phase) == "$2" ]]; }

# 1. The first pass: alpha converges, beta and gamma wait for their locks;
#    the daemon is not ready while they wait.
wait_for phase_is alpha converged
wait_for phase_is beta waiting
wait_for phase_is gamma waiting
msg=$(status_field beta message)
[[ $msg == *"repo-beta/.git/index.lock"* ]] || fail "the waiting slug does not say why: $msg"
[[ ! -e $(eg_file beta) ]] || fail "a held-back slug was written"
daemon_ready && fail "ready while two bottles of the first pass were held back"

# gamma's checkout finishes: gamma converges. beta goes away while held:
# nothing is left of the first pass, so the daemon is ready.
bottle_start gamma
rm "$BR_TMP/repo-gamma/.git/index.lock"
wait_for slug_converged gamma
wait_for tree_removed "$BR_TMP/state/beta"
wait_for not status_lists beta
wait_for daemon_ready
# A new beta, its checkout done: converged without waiting.
rm "$BR_TMP/repo-beta/.git/index.lock"
bottle_create beta
bottle_start beta
wait_for slug_converged beta

# 2. A lock taken while the daemon runs holds a new fragment back; its
#    release lets it through.
wait_for slug_converged alpha
touch "$BR_TMP/repo-alpha/.git/index.lock"
write_atomic "$BR_TMP/repo-alpha/bottles/git.yaml" <<'YAML'
routes:
  - host: git.example.org
    path_allowlist: [/]
YAML
wait_for phase_is alpha waiting
[[ $(status_field alpha message) == *index.lock* ]] || fail "alpha waits without saying why"
hosts_are alpha || fail "a fragment was applied while git held its index.lock"
rm "$BR_TMP/repo-alpha/.git/index.lock"
wait_for hosts_are alpha git.example.org
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
wait_for slug_converged alpha

# 3. A lock nobody releases (git crashed): after 10 s the slug converges
#    past it, with one warning; later changes are not held back by it.
touch "$BR_TMP/repo-alpha/.git/index.lock"
stale_t0=$(_br_now_us)
write_atomic "$BR_TMP/repo-alpha/bottles/git2.yaml" <<'YAML'
routes:
  - host: git2.example.org
    path_allowlist: [/]
YAML
wait_for phase_is alpha waiting
wait_for -t 20 hosts_are alpha git.example.org git2.example.org
held_ms=$((($(_br_now_us) - stale_t0) / 1000))
echo "a stale index.lock held alpha for $held_ms ms"
((held_ms >= 9000)) || fail "the lock was ignored after $held_ms ms, before its deadline"
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
wait_for slug_converged alpha
stale_lines=$(grep -c '\[alpha\] .*index.lock held for over' "$DAEMON_LOG" || true)
((stale_lines == 1)) || fail "the stale lock was reported $stale_lines times, expected once"
write_atomic "$BR_TMP/repo-alpha/bottles/git3.yaml" <<'YAML'
routes:
  - host: git3.example.org
    path_allowlist: [/]
YAML
wait_for -t 5 hosts_are alpha git.example.org git2.example.org git3.example.org
wait_for slug_converged alpha

stop_daemon
echo ok
