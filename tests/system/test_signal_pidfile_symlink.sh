#!/usr/bin/env bash
# A pidfile that is a symlink is refused (issue 16): one bottle must not be
# able to point its pidfile at another bottle's and have the daemon signal
# that other bottle's sidecar. The bottle is invalid with a message that
# says so; the other sidecar gets no signal.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
bottles_config "$cfg"
br() { "$BR_BIN" --config "$cfg" "$@"; }
for slug in alpha beta; do
  bottle_create "$slug"
  bottle_start "$slug"
  printf 'routes:\n  - {host: %s.example.com, path_allowlist: [/]}\n' "$slug" | bottle_fragment "$slug" a.yaml
  br once "$slug" >/dev/null || fail "once $slug failed"
  wait_for sidecar_settled "$(eg_log "$slug")" "$(eg_file "$slug")"
done
wait_for sidecar_quiet "${EG_PID[beta]}"
beta_lines=$(sidecar_count "$(eg_log beta)")

# alpha's egress goes away and its pidfile becomes a link to beta's.
stop_sidecar "${EG_PID[alpha]}"
alpha_pidfile=$BR_TMP/state/alpha/run/egress.pid
ln -s ../../beta/run/egress.pid "$alpha_pidfile"
printf 'routes:\n  - {host: alpha2.example.com, path_allowlist: [/]}\n' | bottle_fragment alpha a.yaml
rc=0
out=$(br once alpha 2>&1) || rc=$?
((rc == 1)) || fail "once with a symlinked pidfile: exit $rc: $out"
[[ $out == *"alpha: invalid: egress reload impossible: pidfile $alpha_pidfile is a symlink, expected a regular file"* ]] ||
  fail "no refusal naming the symlinked pidfile: $out"
wait_for sidecar_quiet "${EG_PID[beta]}"
(($(sidecar_count "$(eg_log beta)") == beta_lines)) ||
  fail "beta's egress was signalled through alpha's pidfile: $(sidecar_last "$(eg_log beta)")"

# A regular pidfile again (the sidecar writes its own): alpha converges.
rm "$alpha_pidfile"
start_sidecar egress "$(eg_file alpha)" "$(eg_log alpha)" "$alpha_pidfile"
br once alpha >/dev/null || fail "once after the symlink was replaced failed"
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
echo ok
