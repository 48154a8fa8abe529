#!/usr/bin/env bash
# demo.sh: the README's first command. Builds bottle-reconciler, makes a demo
# state directory with two bottles whose sidecars are local processes (the
# stand-in sidecar from tests/sidecar), and runs the daemon in the foreground
# so you can watch it converge them. --smoke runs the same demo unattended:
# it drops a fragment, waits until both sidecars loaded it, and exits.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
smoke=0
[[ ${1:-} == --smoke ]] && smoke=1

"$root/contrib/setup.sh" >/dev/null
build=$root/build/release
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" --target bottle-reconciler br-test-sidecar >/dev/null
br=$build/bottle-reconciler
sidecar=$build/tests/sidecar/br-test-sidecar

demo=${BR_DEMO_DIR:-$root/build/demo}
state=$demo/state
rm -rf "$demo"
mkdir -p "$demo/logs"
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Two bottles, each with a pipelock config that has comments and other keys
# (the reconciler edits api_allowlist only) and one route fragment.
for slug in alpha beta; do
  mkdir -p "$state/$slug/"{pipelock,egress,routes.d,run}
  cat >"$state/$slug/pipelock/pipelock.yaml" <<YAML
# pipelock for bottle $slug; every byte outside api_allowlist is kept
mode: strict
api_allowlist:
  - pypi.org        # package index
dlp:
  scan_bodies: true
YAML
done
cat >"$state/alpha/routes.d/github.yaml" <<'YAML'
routes:
  - host: api.github.com
    path_allowlist: [/repos/acme/, /user]
    auth_scheme: Bearer
    token_env: EGRESS_TOKEN_0
YAML
cat >"$state/beta/routes.d/pypi.yaml" <<'YAML'
routes:
  - host: pypi.org
    path_allowlist: [/simple/]
YAML
echo '{"compose_project": "beta-project"}' >"$state/beta/metadata.json"

cat >"$demo/bottle-reconciler.yaml" <<YAML
# Demo config: the sidecars are local processes told by signal (pidfiles).
# expect: only the bottle's own sidecar is signalled; confirm: a reload
# counts once the sidecar's log names the hash of the bytes written.
state_dir: $state
metrics_file: "{state_dir}/.reconciler/metrics.prom"
pipelock:
  reload:
    driver: signal
    pidfile: "{state_dir}/{slug}/run/pipelock.pid"
    expect: {comm: br-test-sidecar, cmdline_contains: "--file {state_dir}/{slug}/pipelock/"}
    confirm: {log_file: "$demo/logs/{slug}.{sidecar}.log", match: " {sha256} ok"}
egress:
  reload:
    driver: signal
    pidfile: "{state_dir}/{slug}/run/egress.pid"
    expect: {comm: br-test-sidecar, cmdline_contains: "--file {state_dir}/{slug}/egress/"}
    confirm: {log_file: "$demo/logs/{slug}.{sidecar}.log", match: " {sha256} ok"}
YAML

# The sidecars log one line per (re)load: time, event, SHA-256 of the bytes, ok/invalid.
for slug in alpha beta; do
  for sc in pipelock egress; do
    file=$state/$slug/$sc/pipelock.yaml
    [[ $sc == egress ]] && file=$state/$slug/egress/egress_routes.yaml
    "$sidecar" --mode "$sc" --file "$file" --log "$demo/logs/$slug.$sc.log" \
      --pidfile "$state/$slug/run/$sc.pid" &
    pids+=($!)
    touch "$demo/logs/$slug.$sc.log"
    tail -n +1 -F "$demo/logs/$slug.$sc.log" 2>/dev/null | sed -u "s/^/    [sidecar $slug\/$sc] /" &
    pids+=($!)
  done
done

cat <<TEXT

== bottle-reconciler demo ==========================================
state directory: $state
config:          $demo/bottle-reconciler.yaml
sidecar logs:    $demo/logs/   (lines marked [sidecar ...] below)

The daemon now converges both bottles: pipelock first, then egress.
From another terminal, drop a fragment and watch both sidecars reload:

  cat > /tmp/anthropic.yaml <<'YAML'
  routes:
    - host: api.anthropic.com
      path_allowlist: [/v1/]
  YAML
  $br --config $demo/bottle-reconciler.yaml apply alpha /tmp/anthropic.yaml

  $br --config $demo/bottle-reconciler.yaml status
  cat $state/alpha/egress/egress_routes.yaml
  tail -n 3 $state/.reconciler/audit.jsonl

A broken fragment is refused with FILE:LINE:COLUMN and changes nothing.
Ctrl-C stops everything.
====================================================================

TEXT

if ((smoke == 0)); then
  "$br" --config "$demo/bottle-reconciler.yaml" run
  exit $?
fi

# --smoke: the same, unattended, with deadlines instead of a person.
"$br" --config "$demo/bottle-reconciler.yaml" run &
pids+=($!)
deadline() { # deadline SECONDS CMD...: poll CMD until it succeeds
  local end=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < end)) || { echo "demo smoke: timed out waiting for: $*" >&2; return 1; }
    sleep 0.05
  done
}
loaded() { # loaded SLUG SIDECAR FILE: the sidecar's last ok load has FILE's hash
  local want
  want=$(sha256sum "$3" | cut -d' ' -f1)
  [[ $(awk '$4 == "ok" { h = $3 } END { print h }' "$demo/logs/$1.$2.log") == "$want" ]]
}
deadline 20 test -e "$state/alpha/egress/egress_routes.yaml"
deadline 20 loaded alpha egress "$state/alpha/egress/egress_routes.yaml"
printf 'routes:\n  - host: api.anthropic.com\n    path_allowlist: [/v1/]\n' >"$demo/anthropic.yaml"
"$br" --config "$demo/bottle-reconciler.yaml" apply alpha "$demo/anthropic.yaml"
deadline 20 grep -q api.anthropic.com "$state/alpha/egress/egress_routes.yaml"
deadline 20 loaded alpha pipelock "$state/alpha/pipelock/pipelock.yaml"
deadline 20 loaded alpha egress "$state/alpha/egress/egress_routes.yaml"
confirmed() { grep -q '"sidecar":"egress".*"reload":"ok".*egress confirmed sha256' "$state/.reconciler/audit.jsonl"; }
deadline 20 confirmed
"$br" --config "$demo/bottle-reconciler.yaml" status
echo "demo smoke: ok"
