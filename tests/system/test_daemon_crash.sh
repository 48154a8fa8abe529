#!/usr/bin/env bash
# The daemon, scenario "killed between the write and the signal": egress's
# reload runs a script that blocks, so the daemon is caught after renaming
# the new egress file into place and before the sidecar was told. SIGKILL
# then. The owed reload is on disk (STATE/.reconciler/reloads/); a daemon
# started again (now with the signal driver) removes the dead run's temp
# files and delivers it: the sidecar loads the new file, though the file
# itself needs no write.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
blocker=$BR_TMP/blocking-reload
cat >"$blocker" <<'SH'
#!/bin/sh
# A reload that never finishes by itself: records its pid, then waits (for
# nothing but the test's temp dir to go, should the test fail).
echo $$ >"$1.started.tmp" && mv "$1.started.tmp" "$1.started"
while [ -d "${1%/*}" ]; do sleep 0.05; done
exit 1
SH
chmod +x "$blocker"
marker=$BR_TMP/egress-reload

signal_cfg=$BR_TMP/signal.yaml
bottles_config "$signal_cfg"
exec_cfg=$BR_TMP/exec.yaml
cat >"$exec_cfg" <<YAML
state_dir: $BR_TMP/state
pipelock:
  settle_ms: 150
  reload: {driver: signal, pidfile: "{state_dir}/{slug}/run/pipelock.pid", grace_ms: 0}
egress:
  reload: {driver: exec, argv: ["$blocker", "$marker"], timeout_ms: 600000}
YAML

bottle_create alpha
bottle_start alpha
# A first run with the signal driver: everything converged and loaded.
start_daemon "$signal_cfg"
wait_for slug_converged alpha
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
stop_daemon
old_eg=$(sha256_of "$(eg_file alpha)")

# Now with the blocking reload; a fragment to converge.
start_daemon "$exec_cfg"
bottle_fragment alpha github.yaml <<'YAML'
routes:
  - host: api.github.com
    path_allowlist: [/repos/acme/]
YAML
wait_for -t 15 test -e "$marker.started"
blocker_pid=$(<"$marker.started")
reloads=$BR_TMP/state/.reconciler/reloads/alpha
grep -q '^egress   reload owed ' "$reloads" || fail "no owed reload recorded while the egress reload runs"
grep -q '"host": "api.github.com"' "$(eg_file alpha)" || fail "the egress file was not written before its reload"
new_eg=$(sha256_of "$(eg_file alpha)")
[[ $new_eg != "$old_eg" ]] || fail "the egress file did not change"
[[ $(status_field alpha phase) == converging ]] || fail "alpha is not converging: $(daemon_status alpha)"

killed_pid=$DAEMON_PID
kill_daemon
kill -KILL "$blocker_pid" 2>/dev/null || true
# What a crash in the middle of a write leaves: temp files named after the
# dead writer, beside a live file and in a source directory.
echo '{"routes": [' >"$BR_TMP/state/alpha/egress/.br-tmp.$killed_pid.half"
echo 'routes: [' >"$BR_TMP/state/alpha/routes.d/.br-tmp.$killed_pid.half"
grep -q '^egress   reload owed ' "$reloads" || fail "the owed reload record went with the daemon"
[[ $(sidecar_live_hash "$(eg_log alpha)") == "$old_eg" ]] || fail "egress loaded the new file before the restart"

# The restart removes the temp files and delivers the reload it owes.
start_daemon "$signal_cfg"
wait_for slug_converged alpha
wait_for sidecar_has "$(eg_log alpha)" reload "$new_eg" ok
[[ $(sidecar_live_hash "$(eg_log alpha)") == "$new_eg" ]] || fail "egress does not run the new file"
[[ $(sha256_of "$(eg_file alpha)") == "$new_eg" ]] || fail "the egress file changed on the restart"
grep -q '^egress   reload done ' "$reloads" || fail "the owed reload record outlived the reload"
daemon_log_has 'egress: reload owed from an earlier write' || fail "the restart did not say it delivered an owed reload"
# Removed after READY, in the background (they are invisible to sidecars and
# to the fragment scan meanwhile).
no_temp_files() { [[ -z $(find "$BR_TMP/state" -name '.br-tmp.*') ]]; }
wait_for no_temp_files
wait_for sidecar_settled "$(pl_log alpha)" "$(pl_file alpha)"

stop_daemon
echo ok
