# daemon.sh: runs `bottle-reconciler run` in the background for the system
# tests and asks it what it is doing; source it after lib.sh and bottles.sh.
# Defines functions only: it must not start processes, set options or traps.
# shellcheck shell=bash
#
#   spawn_daemon CFG [ARG...]       start "$BR_BIN" --config CFG [ARG...] run in the background, track it;
#                                   sets DAEMON_PID, DAEMON_CFG and DAEMON_LOG (a new $BR_TMP/daemon.N.log
#                                   holding its stdout and stderr)
#   start_daemon CFG [ARG...]       spawn_daemon, then wait (up to $BR_READY_S, default 30 s) for daemon_ready
#   daemon_ready                    succeed once `status --json` says "ready":true (fails the test if the
#                                   daemon has exited)
#   daemon_status [SLUG]            print the daemon's `status --json` answer (nothing if it does not answer)
#   status_field SLUG FIELD         print FIELD of SLUG from `status --json` ('' when absent or SLUG unknown)
#   status_count PHASE              print how many slugs `status --json` counts in PHASE
#   status_lists SLUG               succeed if `status --json` lists SLUG
#   slug_converged SLUG [HASH]      succeed when SLUG is converged (with desired_hash HASH, when given)
#   all_converged N                 succeed when N slugs are known and every one is converged
#   daemon_log_has REGEX            succeed if the current daemon's log has a line matching REGEX (grep -E)
#   stop_daemon                     SIGTERM the daemon, reap it, fail unless it exited 0
#   kill_daemon                     SIGKILL the daemon and reap it
#   proc_cpu_ticks PID              print utime + stime of PID (all threads), in clock ticks
#   proc_has_inotify PID            succeed once PID holds an inotify instance
#   proc_ctxt_switches PID          print voluntary context switches summed over PID's threads
#   sidecar_settled LOG FILE        succeed once the sidecar's live hash is the SHA-256 of FILE

DAEMON_RUNS=0

_br_daemon_alive() {
  pid_gone "$DAEMON_PID" || return 0
  local status=0
  { wait "$DAEMON_PID" || status=$?; } 2>/dev/null
  fail "the daemon (pid $DAEMON_PID) exited with status $status; its log $DAEMON_LOG ends:
$(tail -n 30 "$DAEMON_LOG")"
}

spawn_daemon() {
  DAEMON_CFG=$1
  shift
  DAEMON_RUNS=$((DAEMON_RUNS + 1))
  DAEMON_LOG=$BR_TMP/daemon.$DAEMON_RUNS.log
  "${BR_BIN:?BR_BIN must name the bottle-reconciler binary}" --config "$DAEMON_CFG" "$@" run \
    >"$DAEMON_LOG" 2>&1 &
  DAEMON_PID=$!
  br_track "$DAEMON_PID"
}

start_daemon() {
  spawn_daemon "$@"
  wait_for -t "${BR_READY_S:-30}" daemon_ready
}

daemon_status() {
  "$BR_BIN" --config "$DAEMON_CFG" status --json ${1:+"$1"} 2>/dev/null || true
}

daemon_ready() {
  _br_daemon_alive
  [[ $(daemon_status) == *'"ready":true'* ]]
}

# One python3 per question, the answer on its stdin (1000 slugs make it too
# long for an argument): JSON, which grep would misread. The code gets the
# parsed answer as `answer` (None when the daemon did not answer) and its
# arguments in sys.argv[1:].
_br_status_py() {
  local code=$1 slug=$2
  shift 2
  daemon_status "$slug" | python3 -c "
import json, sys
try:
    answer = json.load(sys.stdin)
except ValueError:
    answer = None
$code" "$@"
}

status_field() {
  _br_status_py '
for s in (answer or {}).get("slugs", []):
    if s.get("slug") == sys.argv[1]:
        v = s.get(sys.argv[2])
        print("" if v is None else v)
' "" "$1" "$2"
}

status_count() {
  _br_status_py '
print(answer["counts"].get(sys.argv[1], 0) if answer else -1)
' "" "$1"
}

status_lists() {
  _br_status_py '
sys.exit(0 if answer and any(s["slug"] == sys.argv[1] for s in answer["slugs"]) else 1)
' "" "$1"
}

slug_converged() {
  _br_status_py '
slugs = (answer or {}).get("slugs", [])
ok = len(slugs) == 1 and slugs[0]["phase"] == "converged" and \
    (not sys.argv[1] or slugs[0].get("desired_hash") == sys.argv[1])
sys.exit(0 if ok else 1)
' "$1" "${2:-}"
}

all_converged() {
  _br_status_py '
slugs = (answer or {}).get("slugs", [])
sys.exit(0 if answer and len(slugs) == int(sys.argv[1]) and all(s["phase"] == "converged" for s in slugs) else 1)
' "" "$1"
}

daemon_log_has() {
  grep -Eq -- "$1" "$DAEMON_LOG"
}

stop_daemon() {
  kill -TERM "$DAEMON_PID"
  reap "$DAEMON_PID"
  ((REAP_STATUS == 0)) || fail "the daemon exited with status $REAP_STATUS after SIGTERM; its log $DAEMON_LOG ends:
$(tail -n 30 "$DAEMON_LOG")"
}

kill_daemon() {
  kill -KILL "$DAEMON_PID"
  reap "$DAEMON_PID"
}

proc_cpu_ticks() {
  local stat
  read -r stat <"/proc/$1/stat"
  # Fields after the command name: state is field 3, utime 14, stime 15.
  stat=${stat##*) }
  local -a f
  read -r -a f <<<"$stat"
  echo $((f[11] + f[12]))
}

proc_has_inotify() {
  local fd
  for fd in /proc/"$1"/fd/*; do
    [[ $(readlink "$fd" 2>/dev/null) == "anon_inode:inotify" ]] && return 0
  done
  return 1
}

proc_ctxt_switches() {
  awk '$1 == "voluntary_ctxt_switches:" { n += $2 } END { print n + 0 }' /proc/"$1"/task/*/status
}

sidecar_settled() {
  [[ -e $2 && $(sidecar_live_hash "$1") == "$(sha256_of "$2")" ]]
}
