#!/usr/bin/env bash
# test_sidecar: drives br-test-sidecar as the daemon's system tests will, so they can trust its log.
# It must not use the daemon: $BR_SIDECAR is the only binary under test here.
set -euo pipefail
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
: "${BR_SIDECAR:?BR_SIDECAR must name the br-test-sidecar binary}"
br_tmpdir
cd "$BR_TMP"

DASHES=$(printf '%064d' 0 | tr 0 -)

# expect_last LOG EVENT HASH STATUS [REASON-SUBSTRING]: the last line says that.
expect_last() {
  local line event hash status reason
  line=$(sidecar_last "$1")
  read -r _ event hash status reason <<<"$line"
  [[ $event == "$2" && $hash == "$3" && $status == "$4" ]] ||
    fail "$1: last line is '$line', wanted '$2 $3 $4'"
  [[ -z ${5:-} || $reason == *"$5"* ]] || fail "$1: reason '$reason' lacks '$5'"
}

# expect_pidfile PIDFILE PID: the pidfile names PID.
expect_pidfile() {
  local content
  content=$(<"$1")
  [[ $content == "$2" ]] || fail "$1 holds '$content', wanted $2"
}

echo "# egress: start, SIGHUP reload, invalid keeps the old config, missing file, SIGTERM"
mkdir egress
EG=egress/egress_routes.yaml
printf '{"routes": [{"host": "api.github.com", "path_allowlist": ["/user"]}]}\n' >"$EG"
start_sidecar egress "$EG" egress.log egress.pid
pid=$SIDECAR_PID
expect_pidfile egress.pid "$pid"
v1=$(sha256_of "$EG")
expect_last egress.log start "$v1" ok

write_atomic "$EG" <<'EOF'
{"routes": [{"host": "api.github.com"}, {"host": "example.com", "path_allowlist": []}], "extra": 1}
EOF
v2=$(sha256_of "$EG")
kill -HUP "$pid"
wait_for sidecar_has egress.log reload "$v2" ok

write_atomic "$EG" <<<'{"routes": [{"host": 7}]}'
bad=$(sha256_of "$EG")
kill -HUP "$pid"
wait_for sidecar_has egress.log reload "$bad" invalid
expect_last egress.log reload "$bad" invalid "routes[0].host"
[[ $(sidecar_live_hash egress.log) == "$v2" ]] || fail "an invalid reload replaced the live config"

write_atomic "$EG" <<<'{"routes": []}'
v3=$(sha256_of "$EG")
kill -HUP "$pid"
wait_for sidecar_has egress.log reload "$v3" ok
# egress has no same-hash shortcut: every SIGHUP is a reload of its own.
kill -HUP "$pid"
wait_for sidecar_count_ge 2 egress.log reload "$v3" ok

rm "$EG"
kill -HUP "$pid"
wait_for sidecar_has egress.log reload "$DASHES" invalid
expect_last egress.log reload "$DASHES" invalid missing
[[ $(sidecar_live_hash egress.log) == "$v3" ]] || fail "a missing file replaced the live config"

stop_sidecar "$pid"
[[ ! -e egress.pid ]] || fail "egress.pid still there after SIGTERM"
sidecar_lines_valid egress.log

echo "# pipelock: the watcher picks up a rename and an in-place write, and keeps old config on bad YAML"
mkdir pipelock
PL=pipelock/pipelock.yaml
printf 'mode: strict\n# hosts the agent may reach\napi_allowlist:\n  - api.github.com\n' >"$PL"
start_sidecar pipelock "$PL" pipelock.log pipelock.pid
pid=$SIDECAR_PID
expect_pidfile pipelock.pid "$pid"
p1=$(sha256_of "$PL")
expect_last pipelock.log start "$p1" ok

write_atomic "$PL" <<'EOF'
mode: strict
api_allowlist:
  - api.github.com
  - 'example.com'
EOF
p2=$(sha256_of "$PL")
wait_for sidecar_has pipelock.log watch "$p2" ok

printf 'mode: strict\napi_allowlist: [a.example, "b.example"]\n' >"$PL"
p3=$(sha256_of "$PL")
wait_for sidecar_has pipelock.log watch "$p3" ok

write_atomic "$PL" <<'EOF'
mode: strict
api_allowlist: [a.example]
---
mode: balanced
EOF
pbad=$(sha256_of "$PL")
wait_for sidecar_has pipelock.log watch "$pbad" invalid
expect_last pipelock.log watch "$pbad" invalid "more than one YAML document"
[[ $(sidecar_live_hash pipelock.log) == "$p3" ]] || fail "an invalid watch reload replaced the live config"

# A file of another name in the same directory is none of pipelock's business.
before=$(sidecar_count pipelock.log)
printf 'x: 1\n' >pipelock/other.yaml
write_atomic "$PL" <<<'mode: strict'
p4=$(sha256_of "$PL")
wait_for sidecar_has pipelock.log watch "$p4" ok
(($(sidecar_count pipelock.log) == before + 1)) || fail "pipelock reacted to another file: $(tail -n 3 pipelock.log)"
(($(sidecar_count pipelock.log reload) == 0)) || fail "reload lines without a SIGHUP"
stop_sidecar "$pid"
[[ ! -e pipelock.pid ]] || fail "pipelock.pid still there after SIGTERM"
sidecar_lines_valid pipelock.log

echo "# pipelock --no-watch: SIGHUP reloads, same hash within 2 s is skipped, invalid then valid"
printf 'mode: strict\napi_allowlist: []\n' >"$PL"
start_sidecar pipelock "$PL" hup.log hup.pid --no-watch
pid=$SIDECAR_PID
h1=$(sha256_of "$PL")
expect_last hup.log start "$h1" ok

printf 'mode: strict\napi_allowlist:\n  - api.github.com\n' >"$PL"
h2=$(sha256_of "$PL")
kill -HUP "$pid"
wait_for sidecar_has hup.log reload "$h2" ok
# Same bytes again: pipelock skips silently. Wait until the signal has been
# read, so the next one cannot merge with it, then change the file.
kill -HUP "$pid"
wait_for not hup_pending "$pid"
printf 'mode: strict\napi_allowlist:\n  - api.github.com\n  - example.com\n' >"$PL"
h3=$(sha256_of "$PL")
kill -HUP "$pid"
wait_for sidecar_has hup.log reload "$h3" ok
t2=$(awk -v h="$h2" '$3 == h { print $1 }' hup.log)
t3=$(awk -v h="$h3" '$3 == h { print $1 }' hup.log)
if awk -v a="$t2" -v b="$t3" 'BEGIN { exit !(b - a < 2) }'; then
  (($(sidecar_count hup.log reload "$h2") == 1)) || fail "a same-hash reload within 2 s was logged"
else
  echo "# (same-hash skip not checked: the machine took over 2 s between reloads)"
fi

printf 'mode: strict\nmode: balanced\n' >"$PL"
hbad=$(sha256_of "$PL")
kill -HUP "$pid"
wait_for sidecar_has hup.log reload "$hbad" invalid
expect_last hup.log reload "$hbad" invalid 'duplicate top-level key "mode"'
printf 'mode: strict\napi_allowlist:\n  - {host: a.example}\n' >"$PL"
hbad2=$(sha256_of "$PL")
kill -HUP "$pid"
wait_for sidecar_has hup.log reload "$hbad2" invalid
expect_last hup.log reload "$hbad2" invalid "api_allowlist[0]"
[[ $(sidecar_live_hash hup.log) == "$h3" ]] || fail "an invalid reload replaced the live config"
printf 'mode: strict\napi_allowlist:\n  - a.example\n' >"$PL"
h4=$(sha256_of "$PL")
kill -HUP "$pid"
wait_for sidecar_has hup.log reload "$h4" ok
stop_sidecar "$pid"
sidecar_lines_valid hup.log

echo "# a missing file at start is invalid; it loads once it exists"
start_sidecar egress egress/none.json none.log none.pid
pid=$SIDECAR_PID
expect_last none.log start "$DASHES" invalid missing
printf '{"routes": []}' >egress/none.json
kill -HUP "$pid"
wait_for sidecar_has none.log reload "$(sha256_of egress/none.json)" ok
stop_sidecar "$pid"

echo "# start-up window: SIGHUP kills, SIGTERM still exits 0, and after it SIGHUP reloads"
for mode in egress pipelock; do
  file=$EG
  [[ $mode == pipelock ]] && file=$PL
  printf '{"routes": []}' >"$EG"
  start_sidecar "$mode" "$file" "early-$mode.log" "early-$mode.pid" --startup-delay-ms 60000
  pid=$SIDECAR_PID
  kill -HUP "$pid"
  reap "$pid"
  ((REAP_STATUS == 128 + 1)) || fail "$mode: SIGHUP in the start-up window gave status $REAP_STATUS, not death by SIGHUP"
  [[ -e early-$mode.pid ]] || fail "$mode: a killed sidecar removed its pidfile"

  start_sidecar "$mode" "$file" "early-$mode.log" "early-$mode.pid" --startup-delay-ms 60000
  stop_sidecar "$SIDECAR_PID"
  [[ ! -e early-$mode.pid ]] || fail "$mode: pidfile left after SIGTERM in the start-up window"

  # --no-watch, so the reload below can only come from the SIGHUP.
  start_sidecar "$mode" "$file" "late-$mode.log" "late-$mode.pid" --startup-delay-ms 200 --no-watch
  pid=$SIDECAR_PID
  wait_for hup_safe "$pid"
  kill -HUP "$pid"
  if [[ $mode == egress ]]; then
    wait_for sidecar_has "late-$mode.log" reload "$(sha256_of "$file")" ok
  else
    # The unchanged file is skipped within 2 s of the start load; a changed
    # one shows that the SIGHUP was survived and handled.
    wait_for not hup_pending "$pid"
    printf 'mode: strict\napi_allowlist: [late.example]\n' >"$PL"
    kill -HUP "$pid"
    wait_for sidecar_has "late-$mode.log" reload "$(sha256_of "$PL")" ok
  fi
  stop_sidecar "$pid"
  sidecar_lines_valid "early-$mode.log"
  sidecar_lines_valid "late-$mode.log"
done

echo "# bad command lines are refused with status 2"
for args in "--mode proxy --file x --log l --pidfile p" "--mode egress --file x --log l" \
  "--mode egress --file x --log l --pidfile p --startup-delay-ms soon"; do
  rc=0
  # shellcheck disable=SC2086 # the words are the test
  "$BR_SIDECAR" $args 2>/dev/null || rc=$?
  ((rc == 2)) || fail "'$args' gave status $rc, not 2"
done

echo "PASS"
