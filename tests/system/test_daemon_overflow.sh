#!/usr/bin/env bash
# The daemon, scenario "inotify overflow": the daemon's inotify queue is made
# tiny (fs.inotify.max_queued_events 16, read once when an instance is
# created, restored as soon as the daemon has its instance), then a storm of
# fragment writes over 20 slugs loses events (IN_Q_OVERFLOW), while two of
# the bottles are removed. The resyncs that follow must still bring every
# slug to its final desired state, loaded by both sidecars, and forget the
# removed ones. Needs root to write the sysctl; without it the test is
# skipped (exit 77, for ctest's SKIP_RETURN_CODE).
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"

sysctl_file=/proc/sys/fs/inotify/max_queued_events
queue_orig=$(cat "$sysctl_file")
if [[ $(id -u) != 0 || ! -w $sysctl_file ]]; then
  echo "SKIP: cannot write $sysctl_file (needs root and a writable /proc/sys) to force an inotify overflow"
  exit 77
fi

br_tmpdir
queue_low=16
# The host gets its queue size back, unless someone else has changed it
# since (the sysctl is shared with whatever else runs on the host).
restore_queue() {
  if [[ $(cat "$sysctl_file") == "$queue_low" ]]; then
    echo "$queue_orig" >"$sysctl_file"
  fi
}
# Whatever happens, the sysctl first, then lib.sh's cleanup with the exit
# status it expects in $? (errexit off: `(exit 1)` must not end the trap).
restore_then_cleanup() {
  local rc=$?
  set +e
  restore_queue
  (exit "$rc")
  _br_cleanup
}
trap restore_then_cleanup EXIT

cfg=$BR_TMP/br.yaml
bottles_config "$cfg" <<'YAML'
workers: 8
YAML
slugs=()
for i in $(seq -w 1 20); do
  slugs+=("s$i")
  bottle_create "s$i"
  # Started before the sysctl changes: the sidecars' own watchers keep a normal queue.
  bottle_start "s$i"
done

# Only the daemon's instance is created while the limit is low.
echo "$queue_low" >"$sysctl_file"
spawn_daemon "$cfg"
wait_for proc_has_inotify "$DAEMON_PID"
restore_queue
wait_for -t 30 daemon_ready
wait_for -t 30 all_converged 20

# Two bottles go away in the middle of the storm (their sidecars first).
for slug in s19 s20; do
  stop_sidecar "${PL_PID[$slug]}"
  stop_sidecar "${EG_PID[$slug]}"
done

# The storm: 8 rounds over every slug, each rewriting 5 fragments atomically
# and creating or deleting one more; the last round deletes it. s19 and s20
# are removed after round 4. The daemon is stopped meanwhile, as a daemon
# busy elsewhere would be: it reads no events, so the tiny queue overflows
# whatever the machine's speed (a running daemon sometimes kept up).
overflows() { grep -c 'inotify events were lost' "$DAEMON_LOG" || true; }
overflows_before=$(overflows) # the first pass's own writes may already overflow 16
kill -STOP "$DAEMON_PID"
python3 - "$BR_TMP/state" "${slugs[@]}" <<'PY'
import os, shutil, sys
state, slugs = sys.argv[1], sys.argv[2:]
rounds, files = 8, 5
for r in range(rounds):
    if r == 4:
        for slug in ("s19", "s20"):
            shutil.rmtree(os.path.join(state, slug))
        slugs = [s for s in slugs if s not in ("s19", "s20")]
    for slug in slugs:
        d = os.path.join(state, slug, "routes.d")
        for f in range(files):
            tmp = os.path.join(d, f".f{f}.yaml.tmp")
            with open(tmp, "w") as out:
                out.write(f"routes:\n  - host: {slug}-f{f}.example.org\n    path_allowlist: [/round-{r}/]\n")
            os.rename(tmp, os.path.join(d, f"f{f}.yaml"))
        gone = os.path.join(d, "gone.yaml")
        if r % 2 == 0 and r < rounds - 1:
            with open(gone, "w") as out:
                out.write(f"routes:\n  - host: {slug}-gone.example.org\n    path_allowlist: [/]\n")
        elif os.path.exists(gone):
            os.unlink(gone)
PY
kill -CONT "$DAEMON_PID"

# Every slug ends in its final state; the sidecars run those files; the
# removed bottles are forgotten.
unset 'slugs[19]' 'slugs[18]'
final_ok() {
  python3 - "$BR_TMP/state" "${slugs[@]}" <<'PY'
import json, os, sys
state, slugs = sys.argv[1], sys.argv[2:]
for slug in slugs:
    want = {"routes": [{"host": f"{slug}-f{f}.example.org", "path_allowlist": ["/round-7/"]}
                       for f in range(5)]}
    try:
        got = json.load(open(os.path.join(state, slug, "egress", "egress_routes.yaml")))
    except (OSError, ValueError):
        sys.exit(1)
    if got != want:
        sys.exit(1)
PY
}
wait_for -t 30 final_ok
for slug in "${slugs[@]}"; do
  wait_for sidecar_settled "$(eg_log "$slug")" "$(eg_file "$slug")"
  wait_for sidecar_settled "$(pl_log "$slug")" "$(pl_file "$slug")"
  for f in 0 1 2 3 4; do
    grep -q "^  - $slug-f$f.example.org$" "$(pl_file "$slug")" || fail "$slug-f$f.example.org missing from $slug's pipelock list"
  done
done
wait_for -t 30 all_converged 18
status_lists s19 && fail "s19 was removed but is still listed"
status_lists s20 && fail "s20 was removed but is still listed"
(($(overflows) > overflows_before)) ||
  fail "the storm caused no inotify overflow: the test did not test what it says (log: $DAEMON_LOG)"
echo "overflows logged: $overflows_before before the storm, $(overflows) in all; resyncs: $(grep -c 'resync: inotify queue overflow' "$DAEMON_LOG")"

stop_daemon
echo ok
