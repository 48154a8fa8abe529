#!/usr/bin/env bash
# The daemon, scenario "new input while retrying": a bottle backs off
# because a sidecar is down, with a backoff of an hour. A new fragment is
# tried after the debounce, not at the end of the backoff; so is the
# sidecar's return (a new pidfile), which converges the bottle at once, and
# a config reload (SIGHUP) that fixes a wrong pidfile path. The periodic
# resync, which changes no input, does not cut the backoff short.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
# An hour, not a minute: each delay is random up to the bound (full jitter),
# and 60 s would let the old rule pass by luck one run in twelve.
bottles_config "$cfg" <<'YAML'
backoff: {initial_ms: 3600000, max_ms: 3600000}
resync_interval_s: 1
YAML
bottle_create alpha
bottle_start alpha
start_daemon "$cfg"
wait_for slug_converged alpha
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"

phase_is() { [[ $(status_field alpha phase) == "$1" ]]; }
has_host() { grep -q "\"host\": \"$1\"" "$(eg_file alpha)"; }
# retrying_after N: retrying, with N failed attempts so far.
retrying_after() { [[ $(status_field alpha phase) == retrying && $(status_field alpha attempts) == "$1" ]]; }

# 1. egress dies (SIGKILL: its pidfile stays behind); a fragment leaves the
#    bottle retrying, its next try up to an hour away.
kill -KILL "${EG_PID[alpha]}"
reap "${EG_PID[alpha]}"
bottle_fragment alpha one.yaml <<'YAML'
routes:
  - host: one.example.org
    path_allowlist: [/]
YAML
wait_for retrying_after 1
next_try=$(status_field alpha next_try)
echo "retrying; next try at $next_try"

# 2. The periodic resync (every second here) changes no input: the backoff
#    holds. Its log line comes before it marks the slugs, and the status
#    after it, so a cut backoff would show as pending or a new next try.
resyncs() { grep -c 'resync: periodic' "$DAEMON_LOG" || true; }
resyncs_ge() { (($(resyncs) >= $1)); }
wait_for resyncs_ge $(($(resyncs) + 2))
retrying_after 1 || fail "a periodic resync cut the backoff short: $(daemon_status alpha)"
[[ $(status_field alpha next_try) == "$next_try" ]] || fail "a periodic resync moved the next try"

# 3. A new fragment while retrying is tried now: pipelock allows its host,
#    egress's file routes it (the sidecar reads it when it starts), and the
#    bottle retries again for egress.
t0=$(_br_now_us)
bottle_fragment alpha two.yaml <<'YAML'
routes:
  - host: two.example.org
    path_allowlist: [/]
YAML
tried_again() { has_host two.example.org && phase_is retrying; }
wait_for tried_again
wait_for sidecar_settled "$(pl_log alpha)" "$(pl_file alpha)"
echo "the new fragment was tried after $((($(_br_now_us) - t0) / 1000)) ms"

# 4. egress comes back: its new pidfile converges the bottle now.
t0=$(_br_now_us)
start_sidecar egress "$(eg_file alpha)" "$(eg_log alpha)" "$BR_TMP/state/alpha/run/egress.pid"
EG_PID[alpha]=$SIDECAR_PID
wait_for slug_converged alpha
echo "converged $((($(_br_now_us) - t0) / 1000)) ms after egress came back"
[[ $(status_field alpha attempts) == 0 ]] || fail "attempts not reset: $(daemon_status alpha)"
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
has_host one.example.org && has_host two.example.org || fail "egress does not route both fragments"

# 5. pipelock dies; a fragment with a new host waits for it (pipelock must
#    allow a host before egress routes to it). When pipelock comes back,
#    the bottle converges at once: egress runs the new route.
kill -KILL "${PL_PID[alpha]}"
reap "${PL_PID[alpha]}"
bottle_fragment alpha three.yaml <<'YAML'
routes:
  - host: three.example.org
    path_allowlist: [/]
YAML
wait_for retrying_after 1
has_host three.example.org && fail "egress was written before pipelock allowed the host"
t0=$(_br_now_us)
start_sidecar pipelock "$(pl_file alpha)" "$(pl_log alpha)" "$BR_TMP/state/alpha/run/pipelock.pid"
PL_PID[alpha]=$SIDECAR_PID
wait_for has_host three.example.org
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
wait_for slug_converged alpha
echo "egress routes the new host $((($(_br_now_us) - t0) / 1000)) ms after pipelock came back"
grep -q 'three.example.org' "$(pl_file alpha)" || fail "pipelock does not allow the new host"
wait_for sidecar_settled "$(pl_log alpha)" "$(pl_file alpha)"

# 6. A config with a wrong pidfile path for egress: a new fragment leaves the
#    bottle retrying ("no pidfile"). The config fixed, SIGHUP converges it
#    at once: the new config may be what it waits for.
sed 's|run/egress.pid|run/egress-moved.pid|' "$cfg" >"$cfg.new"
mv "$cfg.new" "$cfg"
kill -HUP "$DAEMON_PID"
wait_for daemon_log_has 'SIGHUP: config reloaded'
bottle_fragment alpha four.yaml <<'YAML'
routes:
  - host: four.example.org
    path_allowlist: [/]
YAML
no_pidfile() { phase_is retrying && [[ $(status_field alpha message) == *"no pidfile"* ]]; }
wait_for no_pidfile
has_host four.example.org || fail "the egress file was not written"
sed 's|run/egress-moved.pid|run/egress.pid|' "$cfg" >"$cfg.new"
mv "$cfg.new" "$cfg"
t0=$(_br_now_us)
kill -HUP "$DAEMON_PID"
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
wait_for slug_converged alpha
echo "converged $((($(_br_now_us) - t0) / 1000)) ms after the config was fixed"

stop_daemon
echo ok
