#!/usr/bin/env bash
# The daemon, scenario "a change no event reports": the periodic resync
# (resync_interval_s) is what catches a live file changed without an inotify
# event. A write through a hard link in a directory the daemon does not watch
# raises no event on the watched directory (inotify reports a write to the
# watches of the inode and of the directory it was opened through), so only
# the resync can see it. The repair must come from the resync: the drift line
# follows a "resync: periodic" line logged after the write.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
bottles_config "$cfg" <<'YAML'
resync_interval_s: 1
YAML
bottle_create alpha
bottle_fragment alpha github.yaml <<'YAML'
routes:
  - host: api.github.com
    path_allowlist: [/repos/acme/]
YAML
bottle_start alpha
start_daemon "$cfg"
wait_for slug_converged alpha
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
canon=$(sha256_of "$(eg_file alpha)")

# The periodic timer runs: two resync lines a second apart, at least.
resyncs() { grep -c 'resync: periodic' "$DAEMON_LOG" || true; }
resyncs_ge() { (($(resyncs) >= $1)); }
wait_for -t 10 resyncs_ge 2

# The unseen write, made through a link outside the state directory.
mkdir "$BR_TMP/outside"
ln "$(eg_file alpha)" "$BR_TMP/outside/link"
printf '{"routes": [{"host": "evil.example", "path_allowlist": ["/"]}]}\n' >"$BR_TMP/outside/link"
file_is "$(eg_file alpha)" "$canon" && fail "the write through the link did not reach the live file"
after_write=$(wc -l <"$DAEMON_LOG")

wait_for -t 10 file_is "$(eg_file alpha)" "$canon"
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
wait_for slug_converged alpha
# What repaired it: a periodic resync logged after the write, then the drift.
tail -n +"$((after_write + 1))" "$DAEMON_LOG" | awk '
  /resync: periodic/ { resync = 1 }
  /\[alpha\] drift:/ { if (resync) found = 1; exit }
  END { exit !found }' ||
  fail "the live file was repaired, but not after a periodic resync; the log since the write:
$(tail -n +"$((after_write + 1))" "$DAEMON_LOG")"

stop_daemon
echo "ok"
