#!/usr/bin/env bash
# The docker driver against a real engine: two bottles, each with a pipelock
# and an egress container run as production runs them (the live file's
# directory bind-mounted, --restart unless-stopped). A fragment reaches both
# containers of its bottle, pipelock first, through the container's host pid
# (pidfd), with verify and confirm on: the containers' own logs say what they
# loaded. The restart policy still works after reloads: the process killed
# from the host is restarted by Docker, reads the new file, and the next
# change reaches the new process too.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
source "$here/docker.sh"
docker_setup
cfg=$BR_TMP/br.yaml
docker_config "$cfg" ", verify: true, confirm: {timeout_ms: 5000}" <<'YAML'
backoff: {initial_ms: 50, max_ms: 1000}
YAML

for slug in alpha beta; do
  bottle_create "$slug"
  bottle_metadata "$slug"
  container_run "$slug" pipelock
  container_run "$slug" egress
done
start_daemon "$cfg" --log-level debug
wait_for all_converged 2

bottle_fragment alpha github.yaml <<'YAML'
routes:
  - host: api.github.com
    path_allowlist: [/repos/acme/, /user]
    auth_scheme: Bearer
    token_env: EGRESS_TOKEN_0
YAML
bottle_fragment beta anthropic.json <<'JSON'
{"routes": [{"host": "api.anthropic.com", "path_allowlist": ["/v1/"]}]}
JSON

for slug in alpha beta; do
  wait_for grep -q '"host": "api' "$(eg_file "$slug")"
  wait_for slug_converged "$slug"
  pl_hash=$(sha256_of "$(pl_file "$slug")")
  eg_hash=$(sha256_of "$(eg_file "$slug")")
  # What the containers themselves say they loaded.
  wait_for container_loaded "$slug" pipelock "$pl_hash"
  wait_for container_loaded "$slug" egress "$eg_hash" reload
  # Pipelock loaded its new file before egress loaded its new one.
  pl_t=$(container_log "$slug" pipelock | awk -v h="$pl_hash" '$3 == h && $4 == "ok" { print $1; exit }')
  eg_t=$(container_log "$slug" egress | awk -v h="$eg_hash" '$3 == h && $4 == "ok" { print $1; exit }')
  awk -v p="$pl_t" -v e="$eg_t" 'BEGIN { exit !(p < e) }' ||
    fail "$slug: egress loaded at $eg_t, before pipelock at $pl_t"
done
grep -q 'api.anthropic.com' "$(pl_file beta)" || fail "beta's pipelock does not allow its host"
! grep -q 'api.anthropic.com' "$(pl_file alpha)" || fail "alpha got beta's host"

# Delivered through the host pid, verified and confirmed, as the audit says.
audit=$BR_TMP/state/.reconciler/audit.jsonl
python3 - "$audit" <<'PY' || fail "audit records do not show pidfd delivery with verify and confirm: $(cat "$audit")"
import json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
# The first pass may have found a container too young to signal (deferred).
assert all(r.get("reload") in ("ok", "deferred") for r in records), records
sent = [r for r in records if r.get("reload") == "ok"]
assert len(sent) >= 4, records
for r in sent:
    d = r["reload_detail"]
    assert "(host pid, pidfd)" in d and "the container sees the new file" in d and "its log confirmed" in d, d
PY
! daemon_log_has 'Engine API' || fail "the daemon fell back to the Engine API: $(grep 'Engine API' "$DAEMON_LOG")"

# The restart policy still works: kill the process from the host, as a
# crash would; Docker restarts it and the new process reads the new file.
old_pid=$(container_field alpha egress '{{.State.Pid}}')
old_starts=$(container_count alpha egress start)
eg_hash=$(sha256_of "$(eg_file alpha)")
kill -KILL "$old_pid"
restarted() {
  local state
  state=$(container_field alpha egress '{{.RestartCount}} {{.State.Running}} {{.State.Pid}}')
  [[ $state == [1-9]*" true "* && ${state##* } != "$old_pid" && ${state##* } != 0 ]]
}
wait_for -t 30 restarted
wait_for container_count_ge alpha egress $((old_starts + 1))
[[ $(container_log alpha egress | awk '$2 == "start" { l = $0 } END { print $3, $4 }') == "$eg_hash ok" ]] ||
  fail "the restarted egress did not load the current file: $(container_log alpha egress | tail -n 3)"
# The restart is an event: the daemon looks at the slug again, finds nothing to do.
wait_for daemon_log_has "\[alpha\] container $(container_name alpha egress) started"
wait_for slug_converged alpha

# And the next change reaches the restarted process (once its grace is over).
bottle_fragment alpha pypi.yaml <<'YAML'
routes:
  - host: pypi.org
    path_allowlist: [/simple/]
YAML
wait_for grep -q '"host": "pypi.org"' "$(eg_file alpha)"
eg_hash=$(sha256_of "$(eg_file alpha)")
wait_for container_loaded alpha egress "$eg_hash" reload
wait_for slug_converged alpha
container_running alpha egress || fail "egress is not running after its reload"
echo "ok: fragments reached both containers of each bottle; a killed sidecar was restarted and reloaded again"
