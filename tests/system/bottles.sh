# bottles.sh: builds a state directory of bottles with real sidecar processes
# for the system tests; source it after lib.sh. Defines functions only.
# shellcheck shell=bash
#
#   bottles_config FILE [YAML on stdin]             write a daemon config using the signal driver; a pipelock: or egress: section on stdin replaces the default one
#   bottle_create SLUG                              state dir, pipelock.yaml with comments, empty egress dir
#   bottle_start SLUG                               start both sidecars of SLUG (pids in PL_PID[SLUG], EG_PID[SLUG])
#   bottle_fragment SLUG NAME                       write stdin atomically as a fragment of SLUG
#   pl_log SLUG / eg_log SLUG                       the sidecars' load logs
#   pl_file SLUG / eg_file SLUG                     the live files
#   sidecar_quiet PID                               succeed once PID has no SIGHUP pending and sleeps in poll

declare -A PL_PID EG_PID

bottles_config() {
  local file=$1 extra=""
  [[ -t 0 ]] || extra=$(cat)
  {
    echo "state_dir: $BR_TMP/state"
    # A sidecar section given on stdin replaces the default one as a whole.
    grep -q '^pipelock:' <<<"$extra" || cat <<'YAML'
pipelock:
  settle_ms: 150
  reload: {driver: signal, pidfile: "{state_dir}/{slug}/run/pipelock.pid", grace_ms: 0}
YAML
    grep -q '^egress:' <<<"$extra" || cat <<'YAML'
egress:
  reload: {driver: signal, pidfile: "{state_dir}/{slug}/run/egress.pid", grace_ms: 0}
YAML
    printf '%s\n' "$extra"
  } >"$file"
}

bottle_create() {
  local d=$BR_TMP/state/$1
  mkdir -p "$d/pipelock" "$d/egress" "$d/routes.d" "$d/run" "$BR_TMP/logs"
  cat >"$d/pipelock/pipelock.yaml" <<'YAML'
# pipelock config for this bottle; hand-maintained keys stay as they are
mode: strict   # strict enforces api_allowlist

api_allowlist:
  - pypi.org       # package index
  - "files.pythonhosted.org"

dlp:
  scan_bodies: true   # keep
  patterns: [aws_key, github_token]
# end of file
YAML
}

pl_log() { echo "$BR_TMP/logs/$1.pipelock.log"; }
eg_log() { echo "$BR_TMP/logs/$1.egress.log"; }
pl_file() { echo "$BR_TMP/state/$1/pipelock/pipelock.yaml"; }
eg_file() { echo "$BR_TMP/state/$1/egress/egress_routes.yaml"; }

bottle_start() {
  local slug=$1 d=$BR_TMP/state/$1
  start_sidecar pipelock "$(pl_file "$slug")" "$(pl_log "$slug")" "$d/run/pipelock.pid"
  PL_PID[$slug]=$SIDECAR_PID
  start_sidecar egress "$(eg_file "$slug")" "$(eg_log "$slug")" "$d/run/egress.pid"
  EG_PID[$slug]=$SIDECAR_PID
}

bottle_fragment() {
  write_atomic "$BR_TMP/state/$1/routes.d/$2"
}

sidecar_quiet() {
  not hup_pending "$1" || return 1
  local state wchan
  state=$(awk '{ sub(/.*\) /, ""); print substr($0, 1, 1) }' "/proc/$1/stat")
  wchan=$(cat "/proc/$1/wchan" 2>/dev/null || true)
  [[ $state == S && $wchan == *poll* ]]
}
