#!/usr/bin/env bash
# The daemon, scenario "the watch limit is reached": slugs that inotify
# cannot watch any more are polled every 2 s instead, a change to one of
# them still converges, and once watches fit again (the limit raised), the
# slug is watched again and polling stops.
#
# The limit is lowered for this test alone: the script runs itself in a new
# user namespace, whose inotify limits (/proc/sys/user/max_inotify_watches)
# are its own, so nothing else on the host sees the low value (the host-wide
# fs.inotify.max_user_watches is never touched, see test_daemon_overflow).
set -euo pipefail
if [[ -z ${BR_IN_USERNS:-} ]]; then
  unshare --user --map-root-user true 2>/dev/null || {
    echo "FAIL: this test needs user namespaces (unshare --user --map-root-user)" >&2
    exit 1
  }
  BR_IN_USERNS=1 exec unshare --user --map-root-user bash "$0" "$@"
fi
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
limit=/proc/sys/user/max_inotify_watches

cfg=$BR_TMP/br.yaml
bottles_config "$cfg"
slugs=(s1 s2 s3 s4 s5 s6)
for slug in "${slugs[@]}"; do
  bottle_create "$slug"
  bottle_fragment "$slug" base.yaml <<'YAML'
routes:
  - host: api.github.com
YAML
  bottle_start "$slug"
done

# Watches held in this namespace so far: the pipelock stand-ins' own.
watches_now() {
  local n=0 f
  for f in /proc/[0-9]*/fdinfo/*; do
    n=$((n + $(grep -c '^inotify wd:' "$f" 2>/dev/null || true)))
  done
  echo "$n"
}
# Room for the daemon's state-directory watches and about one bottle's:
# the other bottles cannot be watched.
echo $(($(watches_now) + 8)) >"$limit"
start_daemon "$cfg"
wait_for -t 30 all_converged 6
daemon_log_has 'inotify watch limit is reached' || fail "the daemon did not say the watch limit is reached"

polled=()
for slug in "${slugs[@]}"; do
  [[ $(status_field "$slug" polled) == True ]] && polled+=("$slug")
done
((${#polled[@]} >= 3)) || fail "expected most slugs polled in status, got: ${polled[*]:-none}"
slug=${polled[-1]}

# A change to a polled slug converges.
bottle_fragment "$slug" more.yaml <<'YAML'
routes:
  - host: example.org
YAML
has_host() { grep -q 'example.org' "$(eg_file "$slug")" && grep -q '^  - example.org$' "$(pl_file "$slug")"; }
wait_for -t 15 has_host
wait_for sidecar_settled "$(eg_log "$slug")" "$(eg_file "$slug")"

# Watches fit again: the next poll watches the slug, and says so.
echo 100000 >"$limit"
wait_for -t 15 daemon_log_has "\[$slug\] watched again"
[[ -z $(status_field "$slug" polled) ]] || fail "$slug is watched again, yet status says polled"
stop_daemon
echo "ok"
