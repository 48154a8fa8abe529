#!/usr/bin/env bash
# The daemon run as the shipped unit runs it: root, with no capabilities but
# the unit's CapabilityBoundingSet. It converges a bottle whose directories
# and live files belong to another user (uid 1234, modes 0750 and 0640) and
# whose sidecars run as that user, keeping each file's owner and mode, and
# writes its metrics file outside the state directory keeping its owner too.
# Then each of the capabilities the signal driver needs, taken away alone,
# makes `once` fail: none of them is there for nothing (CAP_SYS_PTRACE, for
# verify, is shown by test_docker_caps).
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
source "$here/unit.sh"
br_tmpdir
if [[ $(id -u) != 0 ]]; then
  echo "SKIP: needs root, to run the daemon as the unit does and to own files as another user" >&2
  exit 77
fi
command -v setpriv >/dev/null || fail "setpriv is missing (util-linux)"
owner=1234
real_bin=$BR_BIN
# The binaries must be reachable by the sidecars' user.
chmod 755 "$BR_TMP"
as_unit_wrapper "$BR_TMP/as-unit" "$real_bin"
as_user_wrapper "$BR_TMP/sidecar-as-$owner" "$BR_SIDECAR" "$owner"

textfile=$BR_TMP/textfile
metrics=$textfile/bottle_reconciler.prom
cfg=$BR_TMP/br.yaml
bottles_config "$cfg" <<YAML
metrics_file: "$metrics"
YAML
bottle_create alpha
d=$BR_TMP/state/alpha
printf '{\n  "routes": []\n}\n' >"$(eg_file alpha)"
mkdir -p "$textfile"
printf '# nothing yet\n' >"$metrics"
# Everything of the bottle but the daemon's own records belongs to uid 1234.
chown -R "$owner:$owner" "$d" "$BR_TMP/logs" "$textfile"
chmod 0750 "$d/pipelock" "$d/egress" "$d/routes.d"
chmod 0640 "$(pl_file alpha)" "$(eg_file alpha)"
chmod 0644 "$metrics"
BR_SIDECAR=$BR_TMP/sidecar-as-$owner bottle_start alpha
[[ $(stat -c %u "/proc/${EG_PID[alpha]}") == "$owner" ]] || fail "the sidecar does not run as uid $owner"

# owned FILE MODE: FILE belongs to uid and gid 1234 with MODE.
owned() { [[ $(stat -c '%u:%g %a' "$1") == "$owner:$owner $2" ]] || fail "$1 is $(stat -c '%u:%g %a' "$1"), expected $owner:$owner $2"; }
has_host() { grep -q "\"host\": \"$1\"" "$(eg_file alpha)"; }

BR_BIN=$BR_TMP/as-unit start_daemon "$cfg"
# What the daemon has: the unit's set, effective, and nothing above it.
want=$(unit_cap_mask)
for field in CapEff CapPrm CapBnd; do
  got=$(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$DAEMON_PID/status")
  [[ $got == "$want" ]] || fail "the daemon's $field is $got, expected $want (the unit's CapabilityBoundingSet)"
done
[[ $(awk '$1 == "Uid:" { print $3 }' "/proc/$DAEMON_PID/status") == 0 ]] || fail "the daemon does not run as root"
echo "the daemon runs as root with capabilities $want: $(unit_caps)"

wait_for slug_converged alpha
bottle_fragment alpha api.yaml <<'YAML'
routes:
  - host: api.example.org
    path_allowlist: [/v1/]
YAML
wait_for has_host api.example.org
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
wait_for sidecar_settled "$(pl_log alpha)" "$(pl_file alpha)"
wait_for slug_converged alpha
grep -q 'api.example.org' "$(pl_file alpha)" || fail "pipelock does not allow the host"
owned "$(pl_file alpha)" 640
owned "$(eg_file alpha)" 640
metrics_written() { grep -q '^bottle_reconciler_writes_total [1-9]' "$metrics"; }
wait_for metrics_written
owned "$metrics" 644
stop_daemon

# Each capability the signal driver needs, taken away alone: `once` fails,
# and the live files keep their owner. CAP_KILL last: without it the files
# are written and only the signals fail.
n=0
for cap in CAP_DAC_OVERRIDE CAP_CHOWN CAP_FOWNER CAP_KILL; do
  n=$((n + 1))
  bottle_fragment alpha "c$n.yaml" <<YAML
routes:
  - host: c$n.example.org
    path_allowlist: [/]
YAML
  chown "$owner:$owner" "$d/routes.d/c$n.yaml"
  as_unit_wrapper "$BR_TMP/as-unit-less" "$real_bin" "$cap"
  rc=0
  out=$("$BR_TMP/as-unit-less" --config "$cfg" once alpha 2>&1) || rc=$?
  ((rc == 1)) || fail "once without $cap exited $rc, expected 1: $out"
  echo "without $cap: $(tail -n 1 <<<"$out")"
  owned "$(pl_file alpha)" 640
  owned "$(eg_file alpha)" 640
done
# All of them: converged, both sidecars run every host.
out=$("$BR_TMP/as-unit" --config "$cfg" once alpha 2>&1) || fail "once with the unit's capabilities failed: $out"
for i in 1 2 3 4; do
  has_host "c$i.example.org" || fail "c$i.example.org is not routed"
done
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
wait_for sidecar_settled "$(pl_log alpha)" "$(pl_file alpha)"
owned "$(pl_file alpha)" 640
owned "$(eg_file alpha)" 640
echo ok
