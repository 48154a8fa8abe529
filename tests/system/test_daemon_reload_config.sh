#!/usr/bin/env bash
# The daemon, scenario "config reload": SIGHUP with a second source directory
# added makes the daemon read (and watch) it; SIGHUP with an invalid config
# is refused with a log line that says why, and the daemon keeps running on
# the config it had; SIGHUP with the source removed again drops its routes.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
bottles_config "$cfg"
bottle_create alpha
bottle_start alpha
mkdir -p "$BR_TMP/gitops/alpha"
start_daemon "$cfg"
wait_for slug_converged alpha
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
bottle_fragment alpha local.yaml <<'YAML'
routes:
  - host: local.example.org
    path_allowlist: [/local/]
YAML

has_host() { grep -q "\"host\": \"$1\"" "$(eg_file alpha)" 2>/dev/null; }
# settled_with HOST: the egress file names HOST, both sidecars run the files, alpha is converged.
settled_with() {
  wait_for has_host "$1"
  wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
  wait_for sidecar_settled "$(pl_log alpha)" "$(pl_file alpha)"
  wait_for slug_converged alpha
}
settled_with local.example.org

# A fragment in a directory the config does not name yet is not read.
write_atomic "$BR_TMP/gitops/alpha/git.yaml" <<'YAML'
routes:
  - host: git.example.org
    path_allowlist: [/git/]
YAML
"$BR_BIN" --config "$cfg" resync alpha >/dev/null || fail "resync request failed"
wait_for slug_converged alpha
has_host git.example.org && fail "a fragment outside the configured sources was applied"

# 1. SIGHUP with the second source: its fragment is applied after the local one.
bottles_config "$cfg" <<YAML
sources:
  - "{state_dir}/{slug}/routes.d"
  - "$BR_TMP/gitops/{slug}"
YAML
kill -HUP "$DAEMON_PID"
settled_with git.example.org
has_host local.example.org || fail "the local fragment was lost on reload"
daemon_log_has 'SIGHUP: config reloaded' || fail "no log line for the config reload"
python3 - "$(eg_file alpha)" <<'PY' || fail "sources not merged in order"
import json, sys
hosts = [r["host"] for r in json.load(open(sys.argv[1]))["routes"]]
assert hosts == ["local.example.org", "git.example.org"], hosts
PY

# The new source is watched, not just read once.
write_atomic "$BR_TMP/gitops/alpha/git2.yaml" <<'YAML'
routes:
  - host: git2.example.org
    path_allowlist: [/git2/]
YAML
settled_with git2.example.org

# 2. SIGHUP with an invalid config: refused, logged with the reason, the daemon
#    keeps running on the old config (both sources, still watched).
good_cfg=$(cat "$cfg")
printf '%s\ndebounce_ms: soon\n' "$good_cfg" >"$cfg"
kill -HUP "$DAEMON_PID"
wait_for daemon_log_has 'SIGHUP: config not reloaded, keeping the running one'
grep 'config not reloaded' "$DAEMON_LOG" | grep -q 'debounce_ms' || fail "the refusal does not say what is wrong: $(grep 'config not reloaded' "$DAEMON_LOG")"
pid_gone "$DAEMON_PID" && fail "an invalid config stopped the daemon"
# The file back as it was (no SIGHUP): `status` reads it to find the socket.
printf '%s\n' "$good_cfg" >"$cfg"
write_atomic "$BR_TMP/gitops/alpha/git3.yaml" <<'YAML'
routes:
  - host: git3.example.org
    path_allowlist: [/git3/]
YAML
settled_with git3.example.org

# A config that loads but would move the state root is refused too.
printf '%s\n' "${good_cfg//$BR_TMP\/state/$BR_TMP/elsewhere}" >"$cfg"
kill -HUP "$DAEMON_PID"
wait_for daemon_log_has 'state_dir changed'
printf '%s\n' "$good_cfg" >"$cfg"
bottle_fragment alpha local2.yaml <<'YAML'
routes:
  - host: local2.example.org
    path_allowlist: [/local2/]
YAML
settled_with local2.example.org

# 3. SIGHUP with the second source gone again: its routes leave egress
#    (pipelock keeps its hosts: additive), and it is no longer watched.
printf '%s\n' "$good_cfg" | grep -v gitops >"$cfg"
kill -HUP "$DAEMON_PID"
no_git_hosts() { ! grep -q '"host": "git' "$(eg_file alpha)"; }
wait_for no_git_hosts
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
wait_for slug_converged alpha
has_host local2.example.org || fail "a local fragment was lost when a source went away"
hash=$(status_field alpha desired_hash)
eg_lines=$(sidecar_count "$(eg_log alpha)")
write_atomic "$BR_TMP/gitops/alpha/git4.yaml" <<'YAML'
routes:
  - host: git4.example.org
    path_allowlist: [/git4/]
YAML
# Nothing happens, even when a converge is asked for: same desired state,
# no reload.
"$BR_BIN" --config "$cfg" resync alpha >/dev/null || fail "resync request failed"
wait_for slug_converged alpha
wait_for sidecar_quiet "${EG_PID[alpha]}"
slug_converged alpha "$hash" || fail "a fragment in a source no longer configured changed alpha: $(daemon_status alpha)"
[[ $(sidecar_count "$(eg_log alpha)") == "$eg_lines" ]] || fail "egress reloaded for a source no longer configured"
has_host git4.example.org && fail "a fragment in a source no longer configured was applied"

stop_daemon
echo ok
