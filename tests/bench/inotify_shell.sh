#!/usr/bin/env bash
# inotify_shell.sh: the benchmark's "inotify-shell" alternative: what a competent
# operator writes instead of the daemon. Not used by anything but tests/bench.
#
#   inotify_shell.sh STATE_DIR [SETTLE_S]
#
# At start it converges every bottle whose fragments are newer than its live
# files (changes made while it was down must not be lost), then prints
# "ready" on stdout and converges each bottle whose routes.d/ inotifywait
# reports. Converging a bottle: validate and merge its
# JSON fragments with jq (exact hosts, paths starting with /, auth as a pair,
# first fragment naming a host decides its auth, paths united), splice hosts
# that pipelock lacks into api_allowlist with awk, temp file + mv, kill -HUP
# pipelock, sleep SETTLE_S (default 0), then the same for the egress file.
# Like most such scripts it does not fsync; an invalid bottle is skipped.
set -uo pipefail
state=${1:?usage: inotify_shell.sh STATE_DIR [SETTLE_S]}
settle=${2:-0}

# shellcheck disable=SC2016
merge='
def host_ok: type == "string" and test("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$");
def route_ok: type == "object"
  and ((keys - ["host", "path_allowlist", "auth_scheme", "token_env"]) == [])
  and (.host | host_ok)
  and (.path_allowlist | type == "array" and length > 0 and all(.[]; type == "string" and startswith("/")))
  and (has("auth_scheme") == has("token_env"))
  and ((has("token_env") | not) or (.token_env | type == "string" and test("^[A-Z_][A-Z0-9_]*$")));
def fragment_ok: type == "object" and keys == ["routes"] and (.routes | type == "array" and all(.[]; route_ok));
if all(.[]; fragment_ok) | not then error("invalid fragment") else . end
| reduce (.[].routes[]) as $r ({order: [], by: {}};
    if .by[$r.host] then .by[$r.host].path_allowlist += ($r.path_allowlist - .by[$r.host].path_allowlist)
    else .order += [$r.host] | .by[$r.host] = ({host: $r.host, path_allowlist: $r.path_allowlist}
      + if $r.auth_scheme then {auth_scheme: $r.auth_scheme, token_env: $r.token_env} else {} end)
    end)
| {routes: [.order[] as $h | .by[$h]]}'

# Appends hosts (one per line in $2) after the last item of api_allowlist in $1.
splice='
FNR == NR { add[++n] = $0; next }
function flush() { for (i = 1; i <= n; i++) print "  - " add[i]; done = 1 }
/^api_allowlist:/ { inlist = 1; print; next }
inlist && !/^  - / { if (!done) flush(); inlist = 0 }
{ print }
END { if (inlist && !done) flush() }'

hup() {
  local pid
  read -r pid <"$1" 2>/dev/null && kill -HUP "$pid" 2>/dev/null
}

converge() {
  local dir=$state/$1 merged current missing="" line h tmp re='^ *"host": "([^"]*)",?$'
  local fragments=("$dir"/routes.d/*.json)
  [[ -e ${fragments[0]} ]] || return 0
  merged=$(LC_ALL=C jq -s --indent 2 "$merge" "${fragments[@]}" 2>/dev/null) || {
    echo "$1: invalid fragments, left alone" >&2
    return 0
  }
  local pl=$dir/pipelock/pipelock.yaml eg=$dir/egress/egress_routes.yaml
  current=$(awk '/^api_allowlist:/ { l = 1; next } l && /^  - / { gsub(/"/, "", $2); print $2; next } { l = 0 }' "$pl")
  while IFS= read -r line; do
    [[ $line =~ $re ]] || continue
    h=${BASH_REMATCH[1]}
    [[ $'\n'$current$'\n' == *$'\n'"$h"$'\n'* ]] || missing+="$h"$'\n'
  done <<<"$merged"
  if [[ -n $missing ]]; then
    tmp=$dir/pipelock/.pipelock.yaml.sh.$$
    # A here-string, not <(...): bash 5.2 then once in a few thousand
    # converges waited for any child, the background inotifywait included,
    # while it waited to write into our full FIFO.
    awk "$splice" - "$pl" <<<"${missing%$'\n'}" >"$tmp" && mv -f "$tmp" "$pl"
    hup "$dir/run/pipelock.pid"
    [[ $settle == 0 ]] || sleep "$settle"
  fi
  if [[ $(<"$eg") != "$merged" ]]; then
    tmp=$dir/egress/.egress_routes.yaml.sh.$$
    printf '%s\n' "$merged" >"$tmp" && mv -f "$tmp" "$eg"
    hup "$dir/run/egress.pid"
  fi
}

work=$(mktemp -d "${TMPDIR:-/tmp}/inotify-shell.XXXXXX")
mkfifo "$work/events"
watcher=
trap '[[ -n $watcher ]] && kill "$watcher" 2>/dev/null; rm -rf "$work"' EXIT
trap 'exit 0' TERM INT
# Watch first, then the initial pass: nothing changed meanwhile is missed.
printf '%sroutes.d/\n' "$state"/*/ >"$work/dirs"
inotifywait -m -e close_write,moved_to,delete,moved_from --format '%w' \
  --fromfile "$work/dirs" >"$work/events" 2>"$work/stderr" &
watcher=$!
exec 3<"$work/events"
until grep -q '^Watches established' "$work/stderr"; do
  kill -0 "$watcher" 2>/dev/null || { cat "$work/stderr" >&2; exit 1; }
  sleep 0.01
done
# Like make, the start pass skips a bottle whose fragments are all older
# than both its live files: validated and applied before, by us or another.
fresh() {
  local dir=$state/$1 f
  [[ -e $dir/egress/egress_routes.yaml && -e $dir/pipelock/pipelock.yaml ]] || return 1
  for f in "$dir"/routes.d/*.json; do
    [[ $f -ot $dir/egress/egress_routes.yaml && $f -ot $dir/pipelock/pipelock.yaml ]] || return 1
  done
}
for dir in "$state"/*/; do
  slug=${dir%/}
  slug=${slug##*/}
  fresh "$slug" || converge "$slug"
done
echo ready
while read -r dir <&3; do
  slug=${dir%/routes.d/}
  slug=${slug%/}
  converge "${slug##*/}"
done
