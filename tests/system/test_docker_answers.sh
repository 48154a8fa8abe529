#!/usr/bin/env bash
# What the docker driver makes of each kind of engine answer, against a
# stand-in engine (tests/system/docker_standin.py; no Docker needed): no such
# container and a stopped one are "not running" and converged; a 500, an
# engine that is not there and one too slow to answer are retried; a paused
# container is neither signalled nor given up on; a young one waits out its
# grace; a kill refused with 409 is "not running", with 500 retried. The pid
# the engine names belongs to an unrelated process here (a decoy): it must
# never be signalled, so every signal goes through the engine.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
sock=$BR_TMP/engine.sock
script=$BR_TMP/engine.json
requests=$BR_TMP/requests.log
export DOCKER_HOST=unix://$sock
echo '{}' >"$script"
python3 "$here/docker_standin.py" "$sock" "$script" "$requests" &
br_track $!
wait_for test -S "$sock"

# A process that is not the container's, with the pid the engine will name.
sleep 1000 &
decoy=$!
br_track "$decoy"

cfg=$BR_TMP/br.yaml
cat >"$cfg" <<YAML
state_dir: $BR_TMP/state
backoff: {initial_ms: 50, max_ms: 200}
pipelock:
  settle_ms: 0
  reload: {driver: docker, grace_ms: 5000}
egress:
  reload: {driver: docker, grace_ms: 5000}
YAML
bottle_create alpha
id=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef

# answer KIND STATUS [MESSAGE] [DELAY_MS]: how the engine answers from now on.
# inspect_answer RUNNING PAUSED STARTED_AT: a 200 inspect of a container
# whose process is the decoy.
answer() {
  python3 - "$script" "$@" <<'PY'
import json, sys
path, kind, status = sys.argv[1], sys.argv[2], int(sys.argv[3])
script = json.load(open(path))
script[kind] = {"status": status, "delay_ms": int(sys.argv[5]) if len(sys.argv) > 5 else 0}
if len(sys.argv) > 4 and sys.argv[4]:
    script[kind]["body"] = {"message": sys.argv[4]}
open(path + ".tmp", "w").write(json.dumps(script))
PY
  mv "$script.tmp" "$script"
}
inspect_answer() {
  python3 - "$script" "$id" "$decoy" "$BR_TMP/state/alpha" "$@" <<'PY'
import json, sys
path, cid, pid, slug_dir, running, paused, started = sys.argv[1:8]
script = json.load(open(path))
script["inspect"] = {"status": 200, "body": {
    "Id": cid, "Name": "/alpha-x-1",
    "State": {"Running": running == "true", "Paused": paused == "true", "Restarting": False,
              "Pid": int(pid), "StartedAt": started},
    "Config": {"StopSignal": "", "Tty": False},
    "HostConfig": {"RestartPolicy": {"Name": "no"}},
    "Mounts": [{"Type": "bind", "Source": slug_dir + "/pipelock", "Destination": "/etc/pipelock"},
               {"Type": "bind", "Source": slug_dir + "/egress", "Destination": "/etc/egress"}]}}
open(path + ".tmp", "w").write(json.dumps(script))
PY
  mv "$script.tmp" "$script"
}
message_has() {
  local phase
  phase=$(status_field alpha phase)
  # A retry under way keeps the message of the one before (a slow engine
  # keeps the slug converging for most of the time).
  [[ $1 == retrying && $phase == converging ]] && phase=retrying
  [[ $phase == "$1" && $(status_field alpha message) == *"$2"* ]]
}
kills() { grep -c '^POST .*/kill' "$requests" || true; }
long_ago=2020-01-01T00:00:00.123456789Z

# No such container (the default answer): the egress file is created, the
# sidecar reads it when it starts.
start_daemon "$cfg"
wait_for message_has converged "not running"

# 500 on inspect: retried, with the engine's own words.
answer inspect 500 "engine broke"
bottle_fragment alpha a.yaml <<'YAML'
routes: [{host: a.example.org, path_allowlist: [/]}]
YAML
wait_for message_has retrying "engine broke (HTTP 500)"

# No engine on the socket: retried.
mv "$sock" "$sock.away"
wait_for message_has retrying "Docker engine not reachable on $sock"
mv "$sock.away" "$sock"

# An engine slower than the request timeout (5 s): retried.
answer inspect 500 "late" 6000
wait_for -t 20 message_has retrying "did not answer in time"

# Paused: waits, and nothing is sent (Docker's kill would unpause it).
before=$(kills)
inspect_answer true true "$long_ago"
wait_for message_has retrying "is paused"
attempts=$(status_field alpha attempts)
wait_for eval '(($(status_field alpha attempts) > attempts + 2))'
(($(kills) == before)) || fail "a paused container was sent a kill: $(grep kill "$requests" | tail -n 1)"

# Started just now: waits out its grace, then is signalled (through the
# engine: the named pid is not the container's). The kill fails with 500.
answer kill 500 "kill failed"
inspect_answer true false "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)"
# (A 5 s grace: a loaded machine still retries inside it; the log keeps what
# status shows only briefly.)
wait_for daemon_log_has '(pipelock|egress) reload deferred: container alpha-(pipelock|egress)-1 started [0-9]+ ms ago; signalling after its 5000 ms grace'
wait_for -t 20 message_has retrying "kill failed (HTTP 500)"
grep -q "^POST /v1.41/containers/$id/kill?signal=SIGHUP$" "$requests" || fail "unexpected kill: $(grep kill "$requests")"

# 409, the container stopped meanwhile: not running, converged.
answer kill 409 "container is not running"
wait_for message_has converged "not running"

# 204: delivered.
answer kill 204
bottle_fragment alpha b.yaml <<'YAML'
routes: [{host: b.example.org, path_allowlist: [/]}]
YAML
wait_for grep -q b.example.org "$(eg_file alpha)"
wait_for daemon_log_has '\[alpha\] converged: 2 files written, 2 reloads'
wait_for slug_converged alpha
grep '"sidecar":"egress"' "$BR_TMP/state/.reconciler/audit.jsonl" | tail -n 1 | grep -qF '(Engine API kill)' ||
  fail "egress was not signalled through the engine"

# The decoy never got a signal.
not pid_gone "$decoy" || fail "the driver signalled pid $decoy, which is not the container's"
stop_daemon
echo "ok: each engine answer mapped to its outcome; an unrelated pid was never signalled"
