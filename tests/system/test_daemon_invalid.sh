#!/usr/bin/env bash
# The daemon, scenario "invalid fragment": a bad fragment makes the slug
# invalid in `status` with the file, line and field; nothing of the slug is
# applied (not even its valid fragments), no sidecar is signalled, and the
# slug is not retried. Fixing the input converges it.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
bottles_config "$cfg" <<'YAML'
backoff: {initial_ms: 20, max_ms: 200}
YAML
bottle_create alpha
bottle_fragment alpha github.yaml <<'YAML'
routes:
  - host: api.github.com
    path_allowlist: [/repos/acme/]
YAML
bottle_start alpha
start_daemon "$cfg"
wait_for slug_converged alpha
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
wait_for sidecar_settled "$(pl_log alpha)" "$(pl_file alpha)"
wait_for sidecar_quiet "${EG_PID[alpha]}"
wait_for sidecar_quiet "${PL_PID[alpha]}"
eg_hash=$(sha256_of "$(eg_file alpha)")
pl_hash=$(sha256_of "$(pl_file alpha)")
eg_lines=$(sidecar_count "$(eg_log alpha)")
pl_lines=$(sidecar_count "$(pl_log alpha)")

# The bad one first: a converge between the two writes must not apply the
# good one on its own.
bottle_fragment alpha zz-bad.yaml <<'YAML'
routes:
  - host: example.org
    path_allowlist: [/ok]
  - host: "*.evil.example"
    path_allowlist: [/]
YAML
bottle_fragment alpha new.yaml <<'YAML'
routes:
  - host: new.example.org
    path_allowlist: [/]
YAML
phase_is() { [[ $(status_field alpha phase) == "$1" ]]; }
wait_for phase_is invalid
msg=$(status_field alpha message)
[[ $msg == *"routes.d/zz-bad.yaml:4:"*"routes[1].host"* ]] || fail "the status message does not point at the error: $msg"
wait_for daemon_log_has '\[alpha\] invalid, waiting for its inputs to change: .*zz-bad.yaml:4:[0-9]+: routes\[1\]\.host'

# Nothing happens: the sidecars stay quiet on their old files, the slug is
# not retried (no attempts, no next try), and it stays invalid.
wait_for sidecar_quiet "${EG_PID[alpha]}"
wait_for sidecar_quiet "${PL_PID[alpha]}"
[[ $(sha256_of "$(eg_file alpha)") == "$eg_hash" ]] || fail "an invalid slug's egress file was written"
[[ $(sha256_of "$(pl_file alpha)") == "$pl_hash" ]] || fail "an invalid slug's pipelock file was written"
[[ $(sidecar_count "$(eg_log alpha)") == "$eg_lines" ]] || fail "egress was reloaded for an invalid slug"
[[ $(sidecar_count "$(pl_log alpha)") == "$pl_lines" ]] || fail "pipelock was reloaded for an invalid slug"
phase_is invalid || fail "alpha left invalid: $(daemon_status alpha)"
[[ $(status_field alpha attempts) == 0 && -z $(status_field alpha next_try) ]] ||
  fail "an invalid slug is being retried: $(daemon_status alpha)"
(($(grep -c '\[alpha\] invalid' "$DAEMON_LOG") == 1)) || fail "the same error was logged more than once"

# The fix: the valid fragments apply together.
rm "$BR_TMP/state/alpha/routes.d/zz-bad.yaml"
has_new() { grep -q '"host": "new.example.org"' "$(eg_file alpha)"; }
wait_for has_new
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
wait_for sidecar_settled "$(pl_log alpha)" "$(pl_file alpha)"
wait_for slug_converged alpha
grep -q '"host": "api.github.com"' "$(eg_file alpha)" || fail "the first fragment was lost"
grep -q '"host": "example.org"' "$(eg_file alpha)" && fail "a route of the removed fragment was applied"

stop_daemon
echo ok
