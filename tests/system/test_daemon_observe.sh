#!/usr/bin/env bash
# The daemon, scenario "seeing what it does": what an operator reads about a
# converge: sd_notify messages (READY=1 after the first pass, STATUS=,
# WATCHDOG=1 when asked for, STOPPING=1), the control socket's mode, the
# audit log (one line per write, hashes equal to the files), the metrics
# textfile, and `resync`.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
bottles_config "$cfg" <<'YAML'
metrics_file: "{state_dir}/.reconciler/metrics.prom"
YAML
bottle_create alpha
bottle_start alpha

# A stand-in for systemd's notify socket: one line per datagram.
notify_log=$BR_TMP/notify.log
python3 - "$BR_TMP/notify.sock" "$notify_log" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a") as out:
    while True:
        out.write(s.recv(65536).decode().replace("\n", " ") + "\n")
        out.flush()
PY
br_track $!
wait_for test -S "$BR_TMP/notify.sock"
notified() { grep -q "$1" "$notify_log" 2>/dev/null; }
notified_ge() { (($(grep -c "$2" "$notify_log" 2>/dev/null) >= $1)); }

NOTIFY_SOCKET=$BR_TMP/notify.sock WATCHDOG_USEC=200000 start_daemon "$cfg"
wait_for notified '^READY=1$'
# READY=1 comes after the first pass: by then alpha's egress file was written.
[[ -e $(eg_file alpha) ]] || fail "READY=1 before the first pass wrote the egress file"
wait_for notified '^STATUS=.*converged'
wait_for notified_ge 2 '^WATCHDOG=1$'
[[ $(stat -c %a "$BR_TMP/state/.reconciler/control.sock") == 600 ]] ||
  fail "control.sock has mode $(stat -c %a "$BR_TMP/state/.reconciler/control.sock"), expected 600"

wait_for slug_converged alpha
bottle_fragment alpha github.yaml <<'YAML'
routes:
  - host: api.github.com
    path_allowlist: [/repos/acme/]
YAML
has_route() { grep -q '"host": "api.github.com"' "$(eg_file alpha)"; }
wait_for has_route
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
wait_for sidecar_settled "$(pl_log alpha)" "$(pl_file alpha)"
wait_for slug_converged alpha

# The audit log: this converge's pipelock and egress records, in that order,
# with the hashes of the bytes now live and the reloads' outcome.
audit=$BR_TMP/state/.reconciler/audit.jsonl
audit_done() {
  python3 - "$audit" "$(sha256_of "$(pl_file alpha)")" "$(sha256_of "$(eg_file alpha)")" <<'PY'
import json, sys
try:
    recs = [json.loads(line) for line in open(sys.argv[1])]
except OSError:
    sys.exit(1)
pl = [r for r in recs if r["sidecar"] == "pipelock" and r.get("sha256_after") == sys.argv[2]]
eg = [r for r in recs if r["sidecar"] == "egress" and r.get("sha256_after") == sys.argv[3]]
if not pl or not eg:
    sys.exit(1)
assert recs.index(pl[-1]) < recs.index(eg[-1]), "egress audited before pipelock"
assert pl[-1]["slug"] == eg[-1]["slug"] == "alpha"
assert pl[-1]["hosts_added"] == ["api.github.com"], pl[-1]
assert pl[-1]["reload"] == "ok" and eg[-1]["reload"] == "ok", (pl[-1], eg[-1])
assert eg[-1]["sha256_before"] and eg[-1]["sha256_before"] != eg[-1]["sha256_after"]
PY
}
wait_for audit_done

# The metrics textfile (rewritten at most once a second) catches up.
metrics=$BR_TMP/state/.reconciler/metrics.prom
metric_ge() {
  [[ -e $metrics ]] && awk -v m="$1" -v n="$2" '$1 == m && $2 >= n { ok = 1 } END { exit !ok }' "$metrics"
}
wait_for metric_ge bottle_reconciler_writes_total 3
wait_for metric_ge 'bottle_reconciler_reloads_total' 3
wait_for metric_ge 'bottle_reconciler_slugs{phase="converged"}' 1

# `resync` converges at once; nothing to do, so nothing is written.
before=$(wc -l <"$audit")
"$BR_BIN" --config "$cfg" resync alpha | grep -q 'resync requested for alpha' || fail "resync did not answer"
"$BR_BIN" --config "$cfg" resync >/dev/null || fail "resync of every slug failed"
wait_for daemon_log_has 'resync: requested over the control socket'
wait_for slug_converged alpha
[[ $(wc -l <"$audit") == "$before" ]] || fail "a resync of a converged slug wrote something"
# The human-readable status names the slug and its phase.
"$BR_BIN" --config "$cfg" status | grep -Eq '^alpha +converged' || fail "status does not show alpha converged"

stop_daemon
wait_for notified '^STOPPING=1$'
echo ok
