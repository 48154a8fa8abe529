#!/usr/bin/env bash
# The daemon, scenario "our own writes": the inotify record of the daemon's
# own rename of a live file wakes no second converge (it used to: a
# converge that found nothing to do after every one that wrote), while an
# edit of the same file right after it is still reverted.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
bottles_config "$cfg"
bottle_create alpha
bottle_fragment alpha github.yaml <<'YAML'
routes:
  - host: api.github.com
    path_allowlist: [/repos/acme/]
YAML
bottle_start alpha
start_daemon "$cfg" --log-level debug

# Each record the daemon reads is either recognised as its own write (this
# line) or marks the slug, never both: counting these lines is exact.
own_lines() { grep -c '\[alpha\] .*(our own write)$' "$DAEMON_LOG" || true; }
own_lines_are() { (($(own_lines) == $1)); }
no_changes_lines() { grep -c '\[alpha\] converged: no changes' "$DAEMON_LOG" || true; }

# The first pass writes pipelock (a host added), then egress.
wait_for slug_converged alpha
wait_for own_lines_are 2
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"

# A change: both files written again, both records recognised.
bottle_fragment alpha pypi.yaml <<'YAML'
routes:
  - host: upload.pypi.org
    path_allowlist: [/legacy/]
YAML
egress_has_pypi() { grep -q '"host": "upload.pypi.org"' "$(eg_file alpha)"; }
wait_for egress_has_pypi
wait_for own_lines_are 4
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
(($(no_changes_lines) == 0)) || fail "a converge with nothing to do ran: $(grep '\[alpha\]' "$DAEMON_LOG")"

# A hand edit of the file the daemon just wrote is not taken for its own.
eg_canon=$(sha256_of "$(eg_file alpha)")
printf '{"routes": []}\n' >"$(eg_file alpha)"
wait_for file_is "$(eg_file alpha)" "$eg_canon"
daemon_log_has '\[alpha\] drift: live files no longer matched' || fail "the hand edit was not reported as drift"

stop_daemon
echo ok
