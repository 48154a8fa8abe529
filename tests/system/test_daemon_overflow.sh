#!/usr/bin/env bash
# The daemon, scenario "inotify overflow": the daemon is stopped (SIGSTOP,
# as a daemon busy elsewhere would be: it reads no events) while a storm of
# fragment writes over 20 slugs queues more events than the kernel keeps
# (fs.inotify.max_queued_events), and two bottles are removed. The kernel
# drops the rest (IN_Q_OVERFLOW). After SIGCONT the resync must still bring
# every slug to its final desired state, loaded by both sidecars, and forget
# the removed bottles.
#
# The sysctl is read, never written: lowering it would force an overflow
# with fewer events, but it is host-wide, and a benchmark that starts inside
# the window saves the low value as the one to restore (seen on the shared
# test host: it stayed at 16, and every later inotify user overflowed).
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
bottles_config "$cfg" <<'YAML'
workers: 8
YAML
slugs=()
for i in $(seq -w 1 20); do
  slugs+=("s$i")
  bottle_create "s$i"
  bottle_start "s$i"
done
start_daemon "$cfg"
wait_for -t 30 all_converged 20

# Two bottles go away in the middle of the storm (their sidecars first).
for slug in s19 s20; do
  stop_sidecar "${PL_PID[$slug]}"
  stop_sidecar "${EG_PID[$slug]}"
done

# The storm: rounds over every slug, each rewriting 5 fragments atomically
# (temp file and rename: 3 or more events each) and creating or deleting
# one more. Enough rounds for twice the kernel's queue; s19 and s20 are
# removed half way; the last round deletes the extra fragment.
queue_max=$(cat /proc/sys/fs/inotify/max_queued_events)
rounds=$(((2 * queue_max) / (20 * 6 * 3) + 8))
overflows() { grep -c 'inotify events were lost' "$DAEMON_LOG" || true; }
overflows_before=$(overflows)
kill -STOP "$DAEMON_PID"
python3 - "$BR_TMP/state" "$rounds" "${slugs[@]}" <<'PY'
import os, shutil, sys
state, rounds, slugs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
files = 5
for r in range(rounds):
    if r == rounds // 2:
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
  python3 - "$BR_TMP/state" "$((rounds - 1))" "${slugs[@]}" <<'PY'
import json, os, sys
state, last, slugs = sys.argv[1], sys.argv[2], sys.argv[3:]
for slug in slugs:
    want = {"routes": [{"host": f"{slug}-f{f}.example.org", "path_allowlist": [f"/round-{last}/"]}
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
  fail "the storm ($rounds rounds for a queue of $queue_max) caused no inotify overflow: the test did not test what it says (log: $DAEMON_LOG)"
echo "$rounds rounds for a queue of $queue_max events: $(($(overflows) - overflows_before)) overflow(s), $(grep -c 'resync: inotify queue overflow' "$DAEMON_LOG") overflow resync(s)"

stop_daemon
echo ok
