#!/usr/bin/env bash
# The daemon, scenario "idle": watching 1000 converged slugs, with nothing
# changing, the daemon spends no CPU and does not wake up: no busy timer, no
# polling. Driver none: no sidecars are needed to be idle.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
n=1000
cfg=$BR_TMP/br.yaml
# The defaults otherwise, the periodic resync (300 s) included.
cat >"$cfg" <<YAML
state_dir: $BR_TMP/state
pipelock:
  settle_ms: 0
  reload: {driver: none}
egress:
  reload: {driver: none}
YAML
python3 - "$BR_TMP/state" "$n" <<'PY'
import os, sys
state, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    slug = f"b{i:04d}"
    d = os.path.join(state, slug)
    for sub in ("pipelock", "egress", "routes.d"):
        os.makedirs(os.path.join(d, sub))
    with open(os.path.join(d, "pipelock", "pipelock.yaml"), "w") as f:
        f.write("mode: strict\napi_allowlist:\n  - pypi.org\n")
    with open(os.path.join(d, "routes.d", "r.yaml"), "w") as f:
        f.write(f"routes:\n  - host: {slug}.example.org\n    path_allowlist: [/]\n")
PY
BR_READY_S=60 start_daemon "$cfg"
wait_for -t 60 all_converged $n
grep -q '"host": "b0999.example.org"' "$(eg_file b0999)" || fail "b0999 not converged"

# The window: ticks and wakeups before, then a wait that takes real time.
# Here a timed wait is the point (the thing under test is what the daemon
# does while time passes and nothing happens), so a background `sleep 3`
# makes the marker that ends it.
ticks0=$(proc_cpu_ticks "$DAEMON_PID")
ctxt0=$(proc_ctxt_switches "$DAEMON_PID")
(sleep 3 && touch "$BR_TMP/window-over") &
wait_for -t 10 test -e "$BR_TMP/window-over"
ticks1=$(proc_cpu_ticks "$DAEMON_PID")
ctxt1=$(proc_ctxt_switches "$DAEMON_PID")
echo "idle 3 s with $n slugs: $((ticks1 - ticks0)) CPU tick(s), $((ctxt1 - ctxt0)) voluntary context switch(es)"
((ticks1 - ticks0 <= 1)) || fail "the idle daemon used $((ticks1 - ticks0)) ticks of CPU in 3 s"
((ctxt1 - ctxt0 <= 2)) || fail "the idle daemon woke up $((ctxt1 - ctxt0)) times in 3 s"

stop_daemon
echo ok
