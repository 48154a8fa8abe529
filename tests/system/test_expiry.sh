#!/usr/bin/env bash
# System tests of routes that expire (issue 13, item 5): `check` and `apply`
# refuse a time already past; `apply --for` and `add-route --for` write
# expires; plan and status say what expires when; the daemon converges the
# bottle at the moment of expiry (egress loses the route, pipelock keeps the
# host in additive mode and loses it in prune mode), the audit says
# "expired"; a file dropped with a time already past is simply not desired;
# and the daemon is idle again after the last expiry, and while the next is
# far away.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
br() { "$BR_BIN" --config "$cfg" "$@"; }
brx() {
  RC=0
  br "$@" >"$BR_TMP/out" 2>"$BR_TMP/err" || RC=$?
}
outerr() { cat "$BR_TMP/out" "$BR_TMP/err"; }
audit=$BR_TMP/state/.reconciler/audit.jsonl

bottles_config "$cfg"
bottle_create x
bottle_start x
bottle_fragment x 10-base.yaml <<'YAML'
routes:
  - {host: api.example.com, path_allowlist: [/v1/]}
YAML
brx once x
((RC == 0)) || fail "once: rc $RC: $(outerr)"

# --- install time: a time already past, a time zone that is not one --------
printf 'expires: 2020-01-01T00:00:00Z\nroutes:\n  - {host: old.example.com, path_allowlist: [/]}\n' >"$BR_TMP/old.yaml"
brx check "$BR_TMP/old.yaml"
((RC == 1)) && grep -qF "$BR_TMP/old.yaml:1:10: expires: \"2020-01-01T00:00:00Z\" is in the past (it is " "$BR_TMP/err" ||
  fail "check of a time already past: rc $RC: $(outerr)"
brx apply x "$BR_TMP/old.yaml"
((RC == 1)) && grep -q "is in the past" "$BR_TMP/err" || fail "apply of a time already past: rc $RC: $(outerr)"
[[ ! -e $BR_TMP/state/x/routes.d/old.yaml ]] || fail "a fragment that ended before it began was installed"
printf 'routes:\n  - {host: tz.example.com, path_allowlist: [/], expires: "2030-01-01T00:00:00 CET"}\n' >"$BR_TMP/tz.yaml"
brx check "$BR_TMP/tz.yaml"
((RC == 1)) && grep -qF "$BR_TMP/tz.yaml:2:58: routes[0].expires: \"2030-01-01T00:00:00 CET\" has a time zone other than Z or an offset" "$BR_TMP/err" ||
  fail "check of another time zone: rc $RC: $(outerr)"
printf 'expires: 2099-01-01T00:00:00Z\nroutes:\n  - {host: later.example.com, path_allowlist: [/]}\n' >"$BR_TMP/later.yaml"
brx apply x "$BR_TMP/later.yaml" --for 1h
((RC == 1)) && grep -q -- "--for cannot add expires to it (it says expires already" "$BR_TMP/err" ||
  fail "apply --for of a file that says expires: rc $RC: $(outerr)"
brx apply x "$BR_TMP/tz.yaml" --for 0m
((RC == 64)) || fail "apply --for 0m: rc $RC: $(outerr)"
brx once x --for 1h
((RC == 64)) || fail "--for with once: rc $RC: $(outerr)"

# --- the daemon: a route that expires goes at its moment -------------------
start_daemon "$cfg"
wait_for slug_converged x
printf 'routes:\n  - {host: temp.example.com, path_allowlist: [/t/]}\n  - {host: api.example.com, path_allowlist: [/v1/, /tmp/]}\n' >"$BR_TMP/temp.yaml"
brx apply x "$BR_TMP/temp.yaml" --for 4s
((RC == 0)) || fail "apply --for 4s: rc $RC: $(outerr)"
grep -qE '^expires: "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z"$' "$BR_TMP/state/x/routes.d/temp.yaml" ||
  fail "apply --for did not write expires: $(cat "$BR_TMP/state/x/routes.d/temp.yaml")"
expires=$(sed -n 's/^expires: "\(.*\)"$/\1/p' "$BR_TMP/state/x/routes.d/temp.yaml")
has_temp() { grep -q '"host": "temp.example.com"' "$(eg_file x)"; }
wait_for has_temp
grep -q '"/tmp/"' "$(eg_file x)" || fail "the expiring path of a lasting host is not live"
grep -q '^  - temp.example.com$' "$(pl_file x)" || fail "pipelock was not widened for the expiring host"
# plan and status say what expires when.
brx plan x
grep -qF "  expires $expires: temp.example.com /t/ ($BR_TMP/state/x/routes.d/temp.yaml:3)" "$BR_TMP/out" ||
  fail "plan does not say what expires when: $(outerr)"
status_expiring() {
  daemon_status x | python3 -c 'import json, sys
s = json.load(sys.stdin)["slugs"][0]
print(" ".join(sorted(r["host"] + "@" + r["expires"] for r in s.get("expiring", []))))'
}
[[ $(status_expiring) == "api.example.com@$expires temp.example.com@$expires" ]] ||
  fail "status --json expiring: $(daemon_status x)"
br status | grep -qF "  expires $expires: temp.example.com /t/" || fail "status does not say what expires: $(br status)"
eg_before=$(sidecar_count "$(eg_log x)" reload)
# At the moment of expiry, without any file event: egress loses the route and
# the path; additive mode keeps the host in pipelock.
wait_for -t 15 not has_temp
grep -q '"/tmp/"' "$(eg_file x)" && fail "the expired path of a lasting host is still live"
grep -q '"/v1/"' "$(eg_file x)" || fail "the lasting route went too"
wait_for sidecar_has "$(eg_log x)" reload "$(sha256_of "$(eg_file x)")" ok
(($(sidecar_count "$(eg_log x)" reload) > eg_before)) || fail "egress was not told"
grep -q '^  - temp.example.com$' "$(pl_file x)" || fail "additive mode removed the expired host from pipelock"
((($(date -u +%s) - $(date -u -d "$expires" +%s)) < 10)) || fail "converged long after the expiry"
audit_expired() {
  python3 - "$audit" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
eg = [r for r in recs if r.get("sidecar") == "egress" and "expired" in r]
if not eg:
    sys.exit(1)
hosts = sorted(e["host"] for e in eg[-1]["expired"])
assert hosts == ["api.example.com", "temp.example.com"], eg[-1]
assert all(e["expires"] and "/temp.yaml:" in e["fragment"] for e in eg[-1]["expired"]), eg[-1]
PY
}
wait_for audit_expired
wait_for daemon_log_has 'a route expired; converging'
wait_for daemon_log_has "egress: temp.example.com expired at $expires \(.*/temp.yaml:3\)"
[[ $(status_expiring) == "" ]] || fail "status still lists an expired route: $(daemon_status x)"

# Idle again after the last expiry: the timer is not armed anew.
quiet_window() {
  local ctxt0 ctxt1
  ctxt0=$(proc_ctxt_switches "$DAEMON_PID")
  sleep 2 # the window watched: its length is the thing under test
  ctxt1=$(proc_ctxt_switches "$DAEMON_PID")
  ((ctxt1 - ctxt0 <= 2)) || fail "$1: the daemon woke up $((ctxt1 - ctxt0)) times in 2 s"
}
wait_for slug_converged x
quiet_window "after the last expiry"

# A file dropped with a time already past: not desired, and not an error.
eg_hash=$(sha256_of "$(eg_file x)")
last=$(status_field x last_converge)
bottle_fragment x 20-late.yaml <<'YAML'
expires: 2020-01-01T00:00:00Z
routes:
  - {host: late.example.com, path_allowlist: [/]}
YAML
converged_since() { [[ $(status_field x last_converge) != "$1" ]] && slug_converged x; }
wait_for converged_since "$last"
[[ $(status_field x phase) == converged ]] || fail "a route already expired made the bottle $(status_field x phase)"
file_is "$(eg_file x)" "$eg_hash" || fail "a route already expired reached egress"

# An expired approval's credential slot is not given to another host while
# its file is there: the egress container may still hold that credential.
brx add-route x --host short.example.com --path /s/ --auth-scheme Bearer --token-ref short --id short --for 2s
((RC == 0)) && grep -q "credential slot EGRESS_TOKEN_0" "$BR_TMP/out" || fail "add-route --for 2s: rc $RC: $(outerr)"
short_live() { grep -q '"host": "short.example.com"' "$(eg_file x)"; }
wait_for short_live
wait_for -t 15 not short_live
brx add-route x --host next.example.com --path /n/ --auth-scheme Bearer --token-ref next --id next
((RC == 0)) && grep -q "next.example.com: credential slot EGRESS_TOKEN_1" "$BR_TMP/out" ||
  fail "a slot of an expired approval was given out again: rc $RC: $(outerr)"
# Bound to another host by hand, the expired binding still refuses it.
bottle_fragment x 40-reuse.yaml <<'YAML'
routes:
  - {host: reuse.example.com, path_allowlist: [/r/], auth_scheme: Bearer, token_env: EGRESS_TOKEN_0}
YAML
phase_is() { [[ $(status_field x phase) == "$1" ]]; }
wait_for phase_is invalid
[[ $(status_field x message) == *"EGRESS_TOKEN_0 is bound to short.example.com already"* ]] ||
  fail "reusing an expired approval's slot: $(status_field x message)"
rm "$BR_TMP/state/x/routes.d/40-reuse.yaml"
wait_for phase_is converged

# An expiry far away: one timer, and the daemon is idle meanwhile.
brx add-route x --host far.example.com --path /f/ --auth-scheme Bearer --token-ref far --id far --for 30d
((RC == 0)) && grep -q "far.example.com: this approval expires at" "$BR_TMP/out" || fail "add-route --for: rc $RC: $(outerr)"
grep -q '"expires": "' "$BR_TMP/state/x/routes.d/~approval-far.json" || fail "add-route --for wrote no expires"
far_live() { grep -q '"host": "far.example.com"' "$(eg_file x)"; }
wait_for far_live
wait_for slug_converged x
[[ $(status_expiring) == "far.example.com@"* ]] || fail "status --json expiring: $(daemon_status x)"
quiet_window "with an expiry 30 days away"
stop_daemon

# --- prune mode: the expired host leaves pipelock too ----------------------
bottles_config "$cfg" <<YAML
pipelock:
  mirror: prune
  settle_ms: 150
  reload: {driver: signal, pidfile: "{state_dir}/{slug}/run/pipelock.pid", grace_ms: 0}
YAML
bottle_create y
bottle_start y
start_daemon "$cfg"
printf 'routes:\n  - {host: brief.example.com, path_allowlist: [/]}\n' >"$BR_TMP/brief.yaml"
brx apply y "$BR_TMP/brief.yaml" --for 3s
((RC == 0)) || fail "apply --for 3s (prune): rc $RC: $(outerr)"
pl_has_brief() { grep -q '^  - brief.example.com$' "$(pl_file y)"; }
wait_for pl_has_brief
wait_for -t 15 not pl_has_brief
grep -q '"host": "brief.example.com"' "$(eg_file y)" && fail "prune mode: egress kept the expired route"
wait_for sidecar_has "$(pl_log y)" reload "$(sha256_of "$(pl_file y)")" ok
stop_daemon
echo ok
