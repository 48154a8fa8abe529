#!/usr/bin/env bash
# test.sh: the one command that builds and runs every test: a normal build,
# then the whole suite again under AddressSanitizer and UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
contrib/setup.sh
jobs=$(nproc)
for variant in release asan; do
  dir=build/$variant
  flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
  [[ $variant == asan ]] && flags=(-DCMAKE_BUILD_TYPE=Debug -DBR_SANITIZE=ON)
  echo "== $variant build"
  cmake -S . -B "$dir" "${flags[@]}" >/dev/null
  cmake --build "$dir" -j "$jobs"
  echo "== $variant tests"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" "$@"
done
