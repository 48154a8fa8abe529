#!/usr/bin/env bash
# The daemon, scenario "a change no event reports": the periodic resync
# (resync_interval_s) is what catches a live file changed without an inotify
# event. A write through a hard link in a directory the daemon does not watch
# raises no event on the watched directory (inotify reports a write to the
# watches of the inode and of the directory it was opened through), so only
# the resync can see it. The repair must come from the resync (see below).
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

wait_for -t 10 file_is "$(eg_file alpha)" "$canon"
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
wait_for slug_converged alpha
# What repaired it: a periodic resync. The daemon logs no trigger for a
# converge, but with one bottle the sequence says it: a converge that
# followed an event would come after the resync's own converge ("no
# changes"); the repair comes straight after a "resync: periodic" line.
prev=$(grep -v '^  ' "$DAEMON_LOG" | grep -B1 -m1 '\[alpha\] drift:' | head -n 1)
[[ $prev == *"resync: periodic"* ]] ||
  fail "the live file was repaired, but not by a periodic resync; the line before the repair: $prev"
stop_daemon
echo "ok"
