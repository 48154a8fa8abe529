#!/usr/bin/env bash
# The daemon, scenario "metrics for node_exporter": the metrics file in a
# textfile directory outside the state directory. Its temp files never end
# in ".prom" (the collector reads every such name, dot names too); one a
# killed daemon left is removed at start; `promtool check metrics` passes;
# the heartbeat is renewed by the periodic resync while nothing changes;
# the last-converge time and the slugs by phase say what alerts need; and a
# real node_exporter scraped while the daemon writes sees the series once,
# with node_textfile_scrape_error 0 and no gathering error.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
for tool in promtool prometheus-node-exporter curl inotifywait; do
  command -v "$tool" >/dev/null 2>&1 ||
    fail "$tool is missing: contrib/setup.sh installs prometheus, prometheus-node-exporter, curl and inotify-tools"
done

textfile=$BR_TMP/textfile
metrics=$textfile/bottle_reconciler.prom
mkdir -p "$textfile"
cfg=$BR_TMP/br.yaml
bottles_config "$cfg" <<YAML
metrics_file: "$metrics"
resync_interval_s: 2
backoff: {initial_ms: 100, max_ms: 400}
YAML

# What a daemon killed mid-write left: a temp of a dead pid, named as the
# earlier versions named it (ending in .prom, so node_exporter reads it).
# Another exporter's file in the same directory is not ours to touch.
sh -c 'exit 0' &
dead=$!
wait "$dead"
stale=$textfile/.br-tmp.$dead.0.bottle_reconciler.prom
printf '# TYPE bottle_reconciler_writes_total counter\nbottle_reconciler_writes_total 999\n' >"$stale"
printf '# HELP other_up Another exporter.\n# TYPE other_up gauge\nother_up 1\n' >"$textfile/other.prom"

# Every name created in the directory, from before the daemon starts.
inotifywait -m -e create -e moved_to --format '%f' "$textfile" >"$BR_TMP/created" 2>"$BR_TMP/inotifywait.err" &
br_track $!
wait_for grep -q 'Watches established' "$BR_TMP/inotifywait.err"

bottle_create alpha
bottle_start alpha
t_start=$(date +%s)
start_daemon "$cfg"
wait_for slug_converged alpha

# metric NAME: its value in the file ('' when absent); has_metric NAME VALUE.
metric() { awk -v m="$1" '$1 == m { print $2 }' "$metrics" 2>/dev/null; }
metric_ge() { [[ -e $metrics ]] && awk -v m="$1" -v n="$2" '$1 == m && $2 >= n { ok = 1 } END { exit !ok }' "$metrics"; }

# 1. Temp files: the daemon has written the file; none of its temps ends in
#    .prom, and the stale one is gone, the other exporter's file kept.
wait_for test -e "$metrics"
wait_for not test -e "$stale"
[[ -e $textfile/other.prom ]] || fail "another exporter's file was removed"
wait_for grep -q '^\.br-tmp\.' "$BR_TMP/created"
bad=$(grep -v '^bottle_reconciler\.prom$' "$BR_TMP/created" | grep '\.prom$' || true)
[[ -z $bad ]] || fail "temp files named *.prom in the textfile directory: $bad"

# 2. promtool: the format and the naming rules.
promtool check metrics <"$metrics" || fail "promtool check metrics refused the file:
$(cat "$metrics")"

# 3. The heartbeat: renewed by the periodic resync (every 2 s here) while
#    nothing changes; the last converge is after the start.
wait_for -t 20 slug_converged alpha
beat=$(metric bottle_reconciler_last_loop_timestamp_seconds)
[[ -n $beat ]] || fail "no bottle_reconciler_last_loop_timestamp_seconds"
wait_for metric_ge bottle_reconciler_last_loop_timestamp_seconds "$(awk -v b="$beat" 'BEGIN { printf "%.3f", b + 1 }')"
last=$(metric bottle_reconciler_last_converge_timestamp_seconds)
awk -v l="$last" -v s="$t_start" -v n="$(date +%s)" 'BEGIN { exit !(l >= s && l <= n + 1) }' ||
  fail "bottle_reconciler_last_converge_timestamp_seconds is $last, not between $t_start and now"

# 4. Slugs by phase: one invalid bottle and one whose egress is down.
bottle_create beta
bottle_start beta
bottle_fragment beta bad.yaml <<'YAML'
routes:
  - host: "*.wildcard.example"
    path_allowlist: [/]
YAML
bottle_create gamma
bottle_start gamma
kill -KILL "${EG_PID[gamma]}"
reap "${EG_PID[gamma]}"
bottle_fragment gamma g.yaml <<'YAML'
routes:
  - host: g.example.org
    path_allowlist: [/]
YAML
phases_are() {
  [[ $(metric 'bottle_reconciler_slugs{phase="converged"}') == 1 &&
    $(metric 'bottle_reconciler_slugs{phase="invalid"}') == 1 &&
    $(metric 'bottle_reconciler_slugs{phase="retrying"}') == 1 ]]
}
wait_for phases_are

# 5. A real node_exporter, its textfile collector on the directory, scraped
#    while the daemon keeps rewriting the file (gamma retries, alpha changes).
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
prometheus-node-exporter --web.listen-address="127.0.0.1:$port" --collector.disable-defaults \
  --collector.textfile --collector.textfile.directory="$textfile" >"$BR_TMP/node_exporter.log" 2>&1 &
br_track $!
scrape() { curl -sf "http://127.0.0.1:$port/metrics" >"$BR_TMP/scrape"; }
wait_for scrape
writes_before=$(metric bottle_reconciler_writes_total)
for i in $(seq 1 15); do
  bottle_fragment alpha "a$i.yaml" <<YAML
routes:
  - host: a$i.example.org
    path_allowlist: [/]
YAML
  scrape || fail "node_exporter did not answer"
  grep -q '^node_textfile_scrape_error 0$' "$BR_TMP/scrape" ||
    fail "node_exporter reports a textfile error: $(grep node_textfile "$BR_TMP/scrape")"
  n=$(grep -c '^bottle_reconciler_writes_total ' "$BR_TMP/scrape" || true)
  ((n == 1)) || fail "node_exporter shows bottle_reconciler_writes_total $n times"
  # Values move (each resync makes every slug pending for a moment): the series are there.
  n=$(grep -c '^bottle_reconciler_slugs{phase="[a-z]*"} [0-9]*$' "$BR_TMP/scrape" || true)
  ((n == 7)) || fail "node_exporter shows $n slugs-by-phase series, expected 7"
  grep -q '^bottle_reconciler_last_loop_timestamp_seconds ' "$BR_TMP/scrape" || fail "no heartbeat in the scrape"
  files=$(grep '^node_textfile_mtime_seconds' "$BR_TMP/scrape" | grep -c 'bottle_reconciler' || true)
  ((files == 1)) || fail "node_exporter read $files files of ours: $(grep '^node_textfile_mtime_seconds' "$BR_TMP/scrape")"
done
wait_for metric_ge bottle_reconciler_writes_total $((writes_before + 1))
grep -q 'error gathering metrics' "$BR_TMP/node_exporter.log" && fail "node_exporter could not gather:
$(grep 'error gathering' "$BR_TMP/node_exporter.log" | head -n 3)"
promtool check metrics <"$metrics" || fail "promtool check metrics refused the file"
echo "$(grep -c . "$BR_TMP/created") names created in the textfile directory, none a *.prom temp"

stop_daemon
echo ok
