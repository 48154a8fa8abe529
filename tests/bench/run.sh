#!/usr/bin/env bash
# run.sh: the benchmark's one command. Builds a release build (no sanitizers)
# into build/bench, then runs every scenario of tests/bench/README.md against
# the daemon, inotify-shell and raw-limit, and prints the table.
#
#   tests/bench/run.sh [--quick] [bench.py options: --only 1,5 --sizes 1000 --rounds 3 --idle 30 --keep]
#
# Run it as root for the 10,000-bottle scenarios: it raises fs.inotify.* and
# kernel.pid_max for the run and puts them back. Prebuilt binaries may be given
# in BR_BIN, BR_SIDECAR and BR_RAW_LIMIT (the smoke test does); BR_BENCH_BUILD
# moves the build directory. The results also go to BUILD/results.json.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BR_BENCH_BUILD:-$root/build/bench}
mkdir -p "$build"

for tool in python3 jq inotifywait cc; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is required (contrib/setup.sh installs it)" >&2; exit 1; }
done

if [[ -z ${BR_BIN:-} || -z ${BR_SIDECAR:-} ]]; then
  echo "== release build in $build" >&2
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBR_SANITIZE=OFF -DBUILD_TESTING=ON >/dev/null
  cmake --build "$build" -j "$(nproc)" --target bottle-reconciler br-test-sidecar >&2
  BR_BIN=$build/bottle-reconciler
  BR_SIDECAR=$build/tests/sidecar/br-test-sidecar
fi
if [[ -z ${BR_RAW_LIMIT:-} ]]; then
  BR_RAW_LIMIT=$build/br-bench-raw-limit
  # The project's warnings and optimisation; tests/bench/CMakeLists.txt builds the same file.
  cc -std=c11 -O2 -g -Wall -Wextra -Wshadow -Wstrict-prototypes -Wformat=2 -Werror -D_GNU_SOURCE -pthread \
    -o "$BR_RAW_LIMIT" "$root/tests/bench/raw_limit.c"
fi

exec python3 "$root/tests/bench/bench.py" --bin "$BR_BIN" --sidecar "$BR_SIDECAR" --raw "$BR_RAW_LIMIT" \
  --json "$build/results.json" "$@"
