#!/usr/bin/env bash
# The daemon, scenario "a stream of large invalid inputs": memory levels off
# and goes back down. Four bottles get a 1 MB invalid fragment each (the
# largest limits.max_file_bytes allows by default: distinct unknown keys, or
# thousands of routes ending in a numeric host), six rounds. Each is parsed
# and refused by a worker, which frees what it parsed, but glibc keeps the
# freed pages in that worker thread's malloc arena: without a trim the
# daemon sat on about 30 MB for good after the first round (3 MB before).
# The bound checked: once the converges are quiet, resident memory is back
# within 8 MB of what it was at the start, after every round.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
# Under AddressSanitizer the heap is ASan's (freed memory sits in its
# quarantine, by design): what is measured here is glibc's malloc.
if ldd "$BR_BIN" | grep -q libasan; then
  echo "skipped: this binary is built with AddressSanitizer, whose allocator is not the one measured" >&2
  exit 77
fi
br_tmpdir
cfg=$BR_TMP/br.yaml
bottles_config "$cfg"
slugs=(b1 b2 b3 b4)
for slug in "${slugs[@]}"; do
  bottle_create "$slug"
  bottle_fragment "$slug" base.yaml <<<'routes: [{host: api.github.com}]'
  bottle_start "$slug"
done
start_daemon "$cfg"
wait_for all_converged 4
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$DAEMON_PID/status"; }
start_kb=$(rss_kb)
bound_kb=$((start_kb + 8 * 1024))
rss_within() { (($(rss_kb) <= bound_kb)); }

# invalid SLUG SEED KIND: a 1 MB invalid fragment whose error names SEED.
invalid() {
  python3 - "$BR_TMP/state/$1/routes.d" "$2" "$3" <<'PY'
import os, random, sys
d, seed, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
r, parts, size = random.Random(seed), [], 0
if kind == "keys":
    parts.append("routes:\n  - host: a.example\n")
    while size < 1000000:
        parts.append(f"    k{seed}_{len(parts)}_{r.randrange(1 << 30)}: 1\n")
        size += len(parts[-1])
else:
    parts.append("routes:\n")
    while size < 1000000:
        paths = ", ".join(f"/p/{r.randrange(1 << 60):020d}/{'x' * 40}" for _ in range(4))
        parts.append(f"  - host: h{seed}-{len(parts)}.example\n    path_allowlist: [{paths}]\n")
        size += len(parts[-1])
    parts.append(f"  - host: 0x7f{seed:06x}\n")
with open(os.path.join(d, ".bad.tmp"), "w") as f:
    f.write("".join(parts))
os.rename(os.path.join(d, ".bad.tmp"), os.path.join(d, "bad.yaml"))
PY
}
message_has() { [[ $(status_field "$1" message) == *"$2"* ]]; }

peak_kb=0
for round in $(seq 1 6); do
  kind=keys
  ((round % 2)) && kind=hosts
  for i in "${!slugs[@]}"; do
    invalid "${slugs[$i]}" $((round * 10 + i)) "$kind"
  done
  for i in "${!slugs[@]}"; do
    seed=$((round * 10 + i))
    token=k${seed}_
    [[ $kind == hosts ]] && token=$(printf '0x7f%06x' "$seed")
    wait_for -t 60 message_has "${slugs[$i]}" "$token"
  done
  now=$(rss_kb)
  ((now > peak_kb)) && peak_kb=$now
  wait_for -t 10 rss_within ||
    fail "round $round: resident memory $(rss_kb) kB, expected at most $bound_kb kB (start $start_kb kB)"
done
echo "resident memory: start $start_kb kB, highest seen right after a round $peak_kb kB, end $(rss_kb) kB"
stop_daemon
echo "ok"
