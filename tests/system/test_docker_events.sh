#!/usr/bin/env bash
# The daemon follows Docker's events, against a stand-in engine on a unix
# socket (so that it can vanish and come back on cue; no Docker needed): with
# no engine at first it says so once and keeps trying; once one answers, a
# sidecar container's start brings its slug to a converge; when the engine
# ends the stream (as a restart does), the daemon reconnects with since= so
# nothing in between is missed, and the next start is seen too.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
export DOCKER_HOST=unix://$BR_TMP/engine.sock
cfg=$BR_TMP/br.yaml
cat >"$cfg" <<YAML
state_dir: $BR_TMP/state
pipelock:
  reload: {driver: docker}
egress:
  reload: {driver: docker}
YAML
bottle_create alpha
printf '{"compose_project": "proj-alpha"}\n' >"$BR_TMP/state/alpha/metadata.json"
bottle_create beta

start_daemon "$cfg" --log-level debug
wait_for daemon_log_has "cannot follow Docker events on $BR_TMP/engine.sock"

# The engine: /events streams one start per connection, then waits; it ends
# the first stream when $BR_TMP/end-stream appears. Every container is
# unknown (404), so converges need no container. Requests go to requests.log.
python3 - "$BR_TMP" <<'PY' &
import os, socketserver, sys, time, http.server
tmp = sys.argv[1]
starts = iter(["proj-alpha-egress-1", "proj-alpha-pipelock-1", "unrelated-1"])
class Engine(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def chunk(self, text):
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()
    def do_GET(self):
        with open(os.path.join(tmp, "requests.log"), "a") as log:
            log.write(self.path + "\n")
        if not self.path.startswith("/v1.41/events?"):
            body = b'{"message":"No such container"}'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        name = next(starts)
        self.chunk('{"Type":"container","Action":"start","Actor":{"ID":"x","Attributes":{"name":"%s"}},'
                   '"time":%d}\n' % (name, time.time()))
        end = os.path.join(tmp, "end-stream")
        while not os.path.exists(end):
            time.sleep(0.02)
        os.unlink(end)
        self.chunk('{"Type":"container","Action":"die","Actor":{"Attributes":{"name":"x"}}}\n')
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
Server(os.path.join(tmp, "engine.sock"), Engine).serve_forever()
PY
br_track $!

# Connected (within the backoff): the first start reaches alpha, not beta.
wait_for -t 40 daemon_log_has '\[alpha\] container proj-alpha-egress-1 started'
! daemon_log_has '\[beta\] container' || fail "beta was marked for alpha's container"
first=$(grep -c '^/v1.41/events' "$BR_TMP/requests.log")
grep '^/v1.41/events' "$BR_TMP/requests.log" | tail -n 1 | grep -vq since= ||
  fail "the first connection asked for old events: $(cat "$BR_TMP/requests.log")"
# Filtered to container starts (and unpauses), URL-encoded.
grep -q 'filters=%7B%22type%22%3A%5B%22container%22%5D%2C%22event%22%3A%5B%22start%22%2C%22unpause%22%5D%7D' \
  "$BR_TMP/requests.log" || fail "unexpected filter: $(cat "$BR_TMP/requests.log")"

# The engine ends the stream: the daemon reconnects at once, with since=.
lost_at=$(date +%s)
touch "$BR_TMP/end-stream"
wait_for daemon_log_has '\[alpha\] container proj-alpha-pipelock-1 started'
since=$(grep '^/v1.41/events' "$BR_TMP/requests.log" | sed -n "$((first + 1))p" | sed -n 's/.*since=\([0-9]*\).*/\1/p')
[[ -n $since ]] || fail "the reconnection did not resume with since=: $(cat "$BR_TMP/requests.log")"
((since <= lost_at && since >= lost_at - 10)) || fail "since=$since, but the stream was lost at $lost_at"
daemon_log_has "Docker events on $BR_TMP/engine.sock: the engine closed the stream; following again" ||
  fail "the lost stream was not reported"
# One warning for the outage at the start, however many retries it took.
(($(grep -c 'cannot follow Docker events' "$DAEMON_LOG") == 1)) || fail "the outage was reported more than once"
stop_daemon
echo "ok: events followed through an absent engine and a lost stream, resumed with since="
