#!/usr/bin/env bash
# The benchmark harness (tests/bench/run.sh --quick) runs to the end against
# the binaries under test and prints a row for every scenario. A smoke test:
# it asserts no time, only that the tool a person runs still works.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
br_tmpdir
out=$BR_TMP/bench.out
err=$BR_TMP/bench.err
# The binaries under test; raw-limit is compiled into the temp dir.
BR_BENCH_BUILD=$BR_TMP/build TMPDIR=$BR_TMP "$here/../bench/run.sh" --quick >"$out" 2>"$err" ||
  fail "tests/bench/run.sh --quick exited with $?; its stderr ends:
$(tail -n 30 "$err")"
cat "$out"
for row in "1 latency, settle/debounce 0" "1 latency, defaults" "1 latency, defaults, confirmed" "2 bulk 50" "3 start-up 50" "4 idle 50" "5 docker"; do
  grep -q "^$row[ ,]" "$out" || fail "no row \"$row\" in the table:
$(cat "$out")"
done
# As root (CI) the caches can be dropped for the start-up from empty caches.
if ((EUID == 0)); then
  grep -Eq '^3 start-up 50 +to READY, empty caches, 1 run \(s\)( +[0-9.]+){3}' "$out" ||
    fail "no start-up from empty caches for every alternative: $(grep '^3 start-up' "$out")"
fi
# Numbers, not dashes, where every alternative ran.
grep -E '^2 bulk 50 +all 100 loaded' "$out" | grep -Eq '( +[0-9.]+){3}' ||
  fail "the bulk row has no figure for every alternative: $(grep '^2 bulk 50 ' "$out")"
# Scenario 6 runs the real egress proxy in containers: with an engine and
# mitmdump it must give a figure for every alternative; without them its row
# says why it did not run, and so does this test.
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 && command -v mitmdump >/dev/null 2>&1; then
  for alt in 'old tooling \(docker exec, docker kill\)' 'daemon, defaults' 'daemon, defaults, pipelock confirmed' \
    'daemon, debounce/settle 0' 'raw limit \(write, kill\(2\) the container.s pid\)'; do
    grep -Eq "^6 approval to allowed request, $alt +p50 [0-9.]+ ms, p99 [0-9.]+ ms over 3 changes" "$out" ||
      fail "scenario 6 has no figure for \"$alt\":
$(grep '^6 ' "$out")"
  done
  grep -q '^6 approval to allowed request, checks .*every request refused by the proxy before its change' "$out" ||
    fail "scenario 6 does not say that each request was refused before its change: $(grep '^6 ' "$out")"
else
  grep -Eq '^6 approval to allowed request +not run: ' "$out" ||
    fail "without an engine or mitmdump, scenario 6 does not say it did not run: $(grep '^6 ' "$out")"
  echo "SKIP scenario 6: $(grep -E '^6 approval to allowed request +not run: ' "$out" | sed 's/^6 approval to allowed request *//')"
fi
[[ -s $BR_TMP/build/results.json ]] || fail "no results.json"
echo ok
