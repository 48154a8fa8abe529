# lib.sh: shell helpers shared by the system tests; source it after `set -euo pipefail`.
# Sourcing only defines functions: it must not start processes, set options or traps.
# shellcheck shell=bash
#
#   fail MSG...                           print "FAIL: MSG" on stderr and exit 1
#   wait_for [-t SECS] CMD [ARG...]       rerun CMD every 0.02 s until it succeeds; fail after SECS (default $BR_WAIT_S, else 10)
#   not CMD [ARG...]                      succeed when CMD fails (wait_for not hup_pending "$pid")
#   br_tmpdir                             make $BR_TMP (mktemp -d) and an EXIT trap that kills tracked children and removes it ($BR_KEEP_TMP=1 keeps it)
#   br_track PID                          let the EXIT trap kill PID (a child of this shell) if it still runs
#   reap PID                              wait for child PID, untrack it, set REAP_STATUS (128+N when killed by signal N)
#   start_sidecar MODE FILE LOG PIDFILE [ARG...]  start $BR_SIDECAR in the background, track it, set SIDECAR_PID, wait for its new start line
#   stop_sidecar PID                      SIGTERM PID, reap it, fail unless it exited 0
#   sidecar_count LOG [EVENT] [HASH] [STATUS]     print how many log lines match (an empty or '*' field matches anything)
#   sidecar_has LOG [EVENT] [HASH] [STATUS]       succeed if at least one log line matches
#   sidecar_count_ge N LOG [EVENT] [HASH] [STATUS]  succeed if at least N log lines match (a wait_for condition)
#   sidecar_last LOG                      print the last log line
#   sidecar_live_hash LOG                 print the hash of the last ok line: what the sidecar runs now ('' if none)
#   sidecar_lines_valid LOG               fail unless every line of LOG has the documented format
#   sha256_of FILE                        print the SHA-256 of FILE's bytes, lowercase hex
#   write_atomic FILE                     write stdin to FILE through a dot-named temp file and a rename in FILE's directory
#   hup_safe PID                          succeed once SIGHUP would not kill PID (caught, blocked or ignored, per /proc)
#   hup_pending PID                       succeed while a SIGHUP waits undelivered or unread for PID
#   pid_gone PID                          succeed once PID has exited (a zombie counts as gone)
#   tree_removed DIR                      rm -rf DIR; succeed once it is gone (wait_for tree_removed DIR: a running
#                                         daemon may write into DIR while rm walks it)

BR_TRACKED_PIDS=()

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# Microseconds since the epoch, without forking; the decimal separator of
# $EPOCHREALTIME follows the locale.
_br_now_us() {
  local t=${EPOCHREALTIME//[.,]/}
  echo "$((10#$t))"
}

wait_for() {
  local secs=${BR_WAIT_S:-10}
  if [[ ${1:-} == -t ]]; then
    secs=$2
    shift 2
  fi
  # Seconds may have a fraction; bash arithmetic has integers only.
  local whole=${secs%%.*} frac=0
  [[ $secs == *.* ]] && frac=${secs#*.}
  frac="${frac}000000"
  local deadline=$(($(_br_now_us) + 10#${whole:-0} * 1000000 + 10#${frac:0:6}))
  until "$@"; do
    if (($(_br_now_us) > deadline)); then
      fail "timed out after ${secs}s waiting for: $*"
    fi
    sleep 0.02
  done
}

not() {
  ! "$@"
}

_br_cleanup() {
  local rc=$? pid
  set +e
  for pid in "${BR_TRACKED_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null
  done
  # Give them the chance to remove their pidfiles, then stop asking.
  local deadline=$(($(_br_now_us) + 2000000))
  for pid in "${BR_TRACKED_PIDS[@]}"; do
    while ! pid_gone "$pid" && (($(_br_now_us) < deadline)); do
      sleep 0.02
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  if [[ -n ${BR_TMP:-} ]]; then
    if [[ ${BR_KEEP_TMP:-0} == 1 ]]; then
      echo "kept $BR_TMP" >&2
    else
      rm -rf -- "$BR_TMP"
    fi
  fi
  exit "$rc"
}

br_tmpdir() {
  BR_TMP=$(mktemp -d "${TMPDIR:-/tmp}/br-test.XXXXXX")
  trap _br_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

br_track() {
  BR_TRACKED_PIDS+=("$1")
}

reap() {
  local pid=$1 kept=() p
  REAP_STATUS=0
  # Braces, so bash's "Hangup" job report goes where wait's stderr goes: a
  # death by signal is what the caller asked about, not news for the log.
  { wait "$pid" || REAP_STATUS=$?; } 2>/dev/null
  for p in "${BR_TRACKED_PIDS[@]}"; do
    [[ $p == "$pid" ]] || kept+=("$p")
  done
  BR_TRACKED_PIDS=("${kept[@]}")
}

tree_removed() {
  rm -rf -- "$1" 2>/dev/null
  [[ ! -e $1 ]]
}

pid_gone() {
  local stat
  read -r stat 2>/dev/null <"/proc/$1/stat" || return 0
  # The state follows the command name, which may itself hold ") ".
  stat=${stat##*) }
  [[ ${stat:0:1} == [ZX] ]]
}

sidecar_count() {
  local log=$1 event=${2:-*} hash=${3:-*} status=${4:-*}
  if [[ ! -e $log ]]; then
    echo 0
    return
  fi
  awk -v e="$event" -v h="$hash" -v s="$status" \
    '(e == "*" || $2 == e) && (h == "*" || $3 == h) && (s == "*" || $4 == s) { n++ }
     END { print n + 0 }' "$log"
}

sidecar_has() {
  (($(sidecar_count "$@") > 0))
}

sidecar_count_ge() {
  local n=$1
  shift
  (($(sidecar_count "$@") >= n))
}

sidecar_last() {
  [[ -e $1 ]] || return 0
  tail -n 1 -- "$1"
}

sidecar_live_hash() {
  [[ -e $1 ]] || return 0
  awk '$4 == "ok" { h = $3 } END { print h }' "$1"
}

sidecar_lines_valid() {
  local bad
  bad=$(grep -Evn '^[0-9]+\.[0-9]{9} (start|reload|watch) ([0-9a-f]{64} ok|([0-9a-f]{64}|-{64}) invalid [^[:cntrl:]]+)$' "$1" || true)
  [[ -z $bad ]] || fail "malformed lines in $1: $bad"
}

_br_sidecar_started() {
  local want=$1 log=$2 pid=$3
  sidecar_count_ge "$want" "$log" start && return 0
  pid_gone "$pid" && fail "sidecar $pid exited before writing its start line to $log"
  return 1
}

start_sidecar() {
  local mode=$1 file=$2 log=$3 pidfile=$4
  shift 4
  local before
  before=$(sidecar_count "$log" start)
  "${BR_SIDECAR:?BR_SIDECAR must name the br-test-sidecar binary}" \
    --mode "$mode" --file "$file" --log "$log" --pidfile "$pidfile" "$@" &
  SIDECAR_PID=$!
  br_track "$SIDECAR_PID"
  wait_for _br_sidecar_started "$((before + 1))" "$log" "$SIDECAR_PID"
}

stop_sidecar() {
  kill -TERM "$1"
  reap "$1"
  ((REAP_STATUS == 0)) || fail "sidecar $1 exited with status $REAP_STATUS after SIGTERM"
}

sha256_of() {
  local hash _
  read -r hash _ < <(sha256sum -- "$1")
  echo "$hash"
}

# file_is FILE HASH: FILE exists and its bytes have that SHA-256.
file_is() { [[ -e $1 && $(sha256_of "$1") == "$2" ]]; }

write_atomic() {
  local dir base tmp
  dir=$(dirname -- "$1")
  base=$(basename -- "$1")
  tmp="$dir/.$base.tmp.$$.$RANDOM"
  cat >"$tmp"
  mv -f -- "$tmp" "$1"
}

# Bit 0 of the /proc masks is signal 1, SIGHUP.
_br_sigmask_has_hup() {
  local pid=$1 field line
  shift
  for field in "$@"; do
    line=$(grep "^$field:" "/proc/$pid/status" 2>/dev/null) || return 1
    ((0x${line##*[[:space:]]} & 1)) && return 0
  done
  return 1
}

hup_safe() {
  _br_sigmask_has_hup "$1" SigBlk SigIgn SigCgt
}

hup_pending() {
  _br_sigmask_has_hup "$1" SigPnd ShdPnd
}
