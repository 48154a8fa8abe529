#!/usr/bin/env bash
# The docker driver with sidecar containers that do not run. A stopped
# container: the file is written, the slug reports "sidecar not running" and
# is converged, with no retries; started again, the sidecar reads the new
# file and the slug is converged with nothing left to do. A paused container
# is left paused (Docker's kill would unpause it): the slug retries, the
# container stays paused and unsignalled; unpaused, it gets its reload.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
source "$here/docker.sh"
docker_setup
cfg=$BR_TMP/br.yaml
# Retries up to 8 s apart, with full jitter (a delay drawn from 0-8 s): the
# paused part below needs a retry scheduled at least 1.5 s ahead, so that
# the unpause event, not the retry, brings the reload. With 3 s the draw
# fell short half the time, and under a loaded machine (ASan, parallel
# tests) the 60 s wait for a long enough one ran out.
docker_config "$cfg" <<'YAML'
backoff: {initial_ms: 8000, max_ms: 8000}
YAML
bottle_create alpha
bottle_metadata alpha
container_run alpha pipelock
container_run alpha egress
start_daemon "$cfg" --log-level debug
wait_for slug_converged alpha
audit=$BR_TMP/state/.reconciler/audit.jsonl
egress_records() { grep -c '"sidecar":"egress"' "$audit" || true; }

# --- stopped ------------------------------------------------------------------
docker stop -t 5 "$(container_name alpha egress)" >/dev/null
[[ $(container_field alpha egress '{{.State.Running}}') == false ]] || fail "egress still runs after docker stop"
before=$(egress_records)
log_lines=$(wc -l <"$DAEMON_LOG")
bottle_fragment alpha github.yaml <<'YAML'
routes:
  - host: api.github.com
    path_allowlist: [/repos/acme/]
YAML
wait_for grep -q '"host": "api.github.com"' "$(eg_file alpha)"
eg_hash=$(sha256_of "$(eg_file alpha)")
not_running_reported() {
  [[ $(status_field alpha phase) == converged && $(status_field alpha message) == *"not running"* ]]
}
wait_for not_running_reported
[[ $(status_field alpha attempts) == 0 ]] || fail "a stopped sidecar counts as a failed attempt: $(daemon_status alpha)"
# Pipelock, which runs, got its reload.
wait_for container_loaded alpha pipelock "$(sha256_of "$(pl_file alpha)")"
# No retry storm: one egress record for the write, and it stays one. (Absence
# can only be watched for a while; a retry would come within the 50 ms backoff.)
last=$(status_field alpha last_converge)
sleep 1
[[ $(egress_records) == $((before + 1)) ]] || fail "egress was tried again: $(tail -n 3 "$audit")"
grep '"sidecar":"egress"' "$audit" | tail -n 1 | grep -q '"reload":"not-running"' ||
  fail "the egress record does not say not-running: $(tail -n 1 "$audit")"
[[ $(status_field alpha last_converge) == "$last" ]] || fail "the slug converged again without a change"
! tail -n +$((log_lines + 1)) "$DAEMON_LOG" | grep -E '\[alpha\].*\(attempt [0-9]+\)' ||
  fail "the daemon retried"

# Started again: the sidecar reads the new file itself; the start event makes
# the daemon look once more, and there is nothing to do.
reloads=$(container_count alpha egress reload)
docker start "$(container_name alpha egress)" >/dev/null
wait_for container_loaded alpha egress "$eg_hash" start
wait_for daemon_log_has "\[alpha\] container $(container_name alpha egress) started"
converged_clean() {
  [[ $(status_field alpha phase) == converged && $(status_field alpha message) != *"not running"* ]]
}
wait_for converged_clean
(($(container_count alpha egress reload) == reloads)) || fail "egress was signalled although it read the file at start"

# --- paused -------------------------------------------------------------------
# Past the start-up grace, so that only the pause holds the reload back.
wait_for container_older_than alpha egress 600
docker pause "$(container_name alpha egress)" >/dev/null
bottle_fragment alpha pypi.yaml <<'YAML'
routes:
  - host: pypi.org
    path_allowlist: [/simple/]
YAML
wait_for grep -q '"host": "pypi.org"' "$(eg_file alpha)"
eg_hash=$(sha256_of "$(eg_file alpha)")
# Retried at least once while paused, and the next retry is a while off
# (one status answer for all of it: the retries do not wait for the test).
paused_waiting() {
  next_try_ns=$(daemon_status alpha | python3 -c '
import datetime, json, sys, time
s = json.load(sys.stdin)["slugs"][0]
if s["phase"] != "retrying" or "paused" not in (s.get("message") or "") or s["attempts"] < 2:
    sys.exit(1)
t = datetime.datetime.strptime(s["next_try"], "%Y-%m-%dT%H:%M:%S.%fZ")
t = t.replace(tzinfo=datetime.timezone.utc).timestamp()
if t - time.time() < 1.5:
    sys.exit(1)
print(int(t * 1e9))' 2>/dev/null)
}
wait_for -t 60 paused_waiting
[[ $(container_field alpha egress '{{.State.Paused}}') == true ]] || fail "the daemon unpaused egress"
! container_loaded alpha egress "$eg_hash" || fail "a paused egress loaded the file"

# Unpaused: the event brings the reload before the scheduled retry.
docker unpause "$(container_name alpha egress)" >/dev/null
wait_for -t 5 container_loaded alpha egress "$eg_hash" reload
loaded_ns=$(container_log alpha egress | awk -v h="$eg_hash" '$2 == "reload" && $3 == h { sub(/\./, ""); print $1; exit }')
((loaded_ns < next_try_ns)) || fail "the reload waited for the retry (loaded $loaded_ns, retry $next_try_ns)"
wait_for slug_converged alpha
container_running alpha egress || fail "egress does not run after its reload"
echo "ok: stopped sidecar reported without retries and converged on start; paused sidecar left paused"
