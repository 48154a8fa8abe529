#!/usr/bin/env bash
# The daemon, scenario "SIGTERM mid-work": 50 bottles get a new fragment each
# and the daemon is stopped while it converges them. It must exit 0, leave
# no temp file anywhere, and leave every live file whole: the old bytes or
# the new ones, never a mix, and never egress ahead of pipelock. A restart
# then finishes what was left.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
# Driver none (no sidecar processes needed) with settle times, so that each
# converge takes a while and many are in flight or queued at the SIGTERM.
cat >"$cfg" <<YAML
state_dir: $BR_TMP/state
workers: 4
pipelock:
  settle_ms: 100
  reload: {driver: none}
egress:
  settle_ms: 100
  reload: {driver: none}
YAML
n=50
slugs=()
for i in $(seq -w 1 $n); do
  slugs+=("s$i")
  bottle_create "s$i"
done
start_daemon "$cfg"
wait_for -t 30 all_converged $n
old_eg=$(sha256_of "$(eg_file s01)")
old_pl=$(sha256_of "$(pl_file s01)")

# The same fragment for every bottle: the new files are equal across bottles.
fragment=$BR_TMP/new.yaml
cat >"$fragment" <<'YAML'
routes:
  - host: api.github.com
    path_allowlist: [/repos/acme/, /user]
    auth_scheme: Bearer
    token_env: EGRESS_TOKEN_0
  - host: pypi.org
    path_allowlist: [/simple/]
YAML
for slug in "${slugs[@]}"; do
  cp "$fragment" "$BR_TMP/state/$slug/routes.d/.new.yaml.tmp"
  mv "$BR_TMP/state/$slug/routes.d/.new.yaml.tmp" "$BR_TMP/state/$slug/routes.d/new.yaml"
done

# SIGTERM once the first bottle has its new egress file: the rest are in
# flight or still queued.
some_new() {
  local slug
  for slug in "${slugs[@]}"; do
    grep -q pypi.org "$(eg_file "$slug")" && return 0
  done
  return 1
}
wait_for some_new
kill -TERM "$DAEMON_PID"
reap "$DAEMON_PID"
((REAP_STATUS == 0)) || fail "the daemon exited $REAP_STATUS after SIGTERM: $(tail -n 20 "$DAEMON_LOG")"
daemon_log_has 'SIGTERM: finishing [0-9]+ converge' || fail "no drain line in the log"

temps=$(find "$BR_TMP/state" -name '.br-tmp.*')
[[ -z $temps ]] || fail "temp files left behind: $temps"

# Every live file is whole; egress new only where pipelock is new.
python3 - "$BR_TMP/state" "$old_eg" "$old_pl" "${slugs[@]}" <<'PY' || fail "a live file is neither old nor new"
import hashlib, json, os, sys
state, old_eg, old_pl, slugs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
new_routes = {"routes": [
    {"host": "api.github.com", "path_allowlist": ["/repos/acme/", "/user"],
     "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0"},
    {"host": "pypi.org", "path_allowlist": ["/simple/"]}]}
eg_new = pl_new = 0
for slug in slugs:
    eg_bytes = open(os.path.join(state, slug, "egress", "egress_routes.yaml"), "rb").read()
    pl_bytes = open(os.path.join(state, slug, "pipelock", "pipelock.yaml"), "rb").read()
    eg = json.loads(eg_bytes)
    eg_is_new = eg == new_routes
    if not eg_is_new:
        assert hashlib.sha256(eg_bytes).hexdigest() == old_eg, f"{slug}: egress is neither old nor new: {eg}"
    pl_is_new = b"\n  - api.github.com\n" in pl_bytes and b"\n  - pypi.org" in pl_bytes
    if not pl_is_new:
        assert hashlib.sha256(pl_bytes).hexdigest() == old_pl, f"{slug}: pipelock is neither old nor new"
    assert pl_is_new or not eg_is_new, f"{slug}: egress allows hosts that pipelock does not"
    eg_new += eg_is_new
    pl_new += pl_is_new
print(f"at SIGTERM: {eg_new} of {len(slugs)} egress files new, {pl_new} pipelock files new")
assert eg_new > 0
PY

# A restart converges the rest.
start_daemon "$cfg"
wait_for -t 30 all_converged $n
for slug in "${slugs[@]}"; do
  grep -q '"host": "pypi.org"' "$(eg_file "$slug")" || fail "$slug did not converge after the restart"
done
stop_daemon
[[ -z $(find "$BR_TMP/state" -name '.br-tmp.*') ]] || fail "temp files left behind after the second run"

# --- converges queued ahead are not waited for ---------------------------------
# One worker, whose egress reload takes 2 s: the queue hands the pool up to
# four converges, and a SIGTERM must wait only for the one that started.
cat >"$BR_TMP/slow.yaml" <<YAML
state_dir: $BR_TMP/state
workers: 1
pipelock:
  settle_ms: 0
  reload: {driver: none}
egress:
  reload: {driver: exec, argv: [/bin/sleep, "2"], timeout_ms: 60000}
YAML
start_daemon "$BR_TMP/slow.yaml"
wait_for -t 30 daemon_ready
queued=(s01 s02 s03 s04 s05)
for slug in "${queued[@]}"; do
  bottle_fragment "$slug" queued.yaml <<'YAML'
routes:
  - host: queued.example.org
    path_allowlist: [/]
YAML
done
some_queued_new() {
  local slug
  for slug in "${queued[@]}"; do
    grep -q queued.example.org "$(eg_file "$slug")" && return 0
  done
  return 1
}
four_converging() { [[ $(status_count converging) == 4 ]]; }
wait_for four_converging # one running, three queued behind it in the pool
wait_for some_queued_new # the running one is in its 2 s reload
kill -TERM "$DAEMON_PID"
reap "$DAEMON_PID"
((REAP_STATUS == 0)) || fail "the daemon exited $REAP_STATUS after SIGTERM: $(tail -n 20 "$DAEMON_LOG")"
done_count=0
for slug in "${queued[@]}"; do
  grep -q queued.example.org "$(eg_file "$slug")" && done_count=$((done_count + 1))
done
((done_count == 1)) || fail "$done_count of 5 queued converges ran after the SIGTERM, expected only the one running"
start_daemon "$cfg"
wait_for -t 30 all_converged $n
for slug in "${queued[@]}"; do
  grep -q queued.example.org "$(eg_file "$slug")" || fail "$slug did not converge after the restart"
done
stop_daemon
echo ok
