#!/usr/bin/env bash
# Writes and signals stay inside the bottle (issue 16): a live file, the
# bottle's directory and the records are reached through no symlink in any
# component, unless follow_symlinks names the directory. A refused bottle
# changes nothing (no write anywhere, no signal) and says which component
# is a symlink and where it points; the other bottles still converge.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
state=$BR_TMP/state
cfg=$BR_TMP/br.yaml
bottles_config "$cfg"
br() { "$BR_BIN" --config "$cfg" "$@"; }
route() { printf 'routes:\n  - {host: %s, path_allowlist: [/]}\n' "$2" | bottle_fragment "$1" a.yaml; }

for slug in alpha beta gamma; do
  bottle_create "$slug"
  bottle_start "$slug"
  route "$slug" "$slug.example.com"
  br once "$slug" >/dev/null || fail "once $slug failed"
  wait_for sidecar_settled "$(eg_log "$slug")" "$(eg_file "$slug")"
done

# Everything a refused alpha must leave alone: beta's files and signals,
# alpha's pipelock file, alpha's audit records, temp files.
hash_or_absent() { if [[ -e $1 ]]; then sha256_of "$1"; else echo absent; fi; }
snapshot() {
  local slug
  for slug in alpha beta; do
    hash_or_absent "$(pl_file "$slug")"
    hash_or_absent "$(eg_file "$slug")"
    wait_for sidecar_quiet "${PL_PID[$slug]}"
    wait_for sidecar_quiet "${EG_PID[$slug]}"
    sidecar_count "$(pl_log "$slug")"
    sidecar_count "$(eg_log "$slug")"
  done
  grep -c '"slug":"alpha"' "$state/.reconciler/audit.jsonl"
  find "$BR_TMP" -name '.br-tmp.*' | wc -l
}

# --- alpha's egress directory is a link to beta's ----------------------------
rm -r "$state/alpha/egress"
ln -s ../beta/egress "$state/alpha/egress"
route alpha alpha2.example.com
route gamma gamma2.example.com
before=$(snapshot)
rc=0
out=$(br once 2>&1) || rc=$?
((rc == 1)) || fail "once with alpha's egress linked to beta's: exit $rc: $out"
want="alpha: invalid: cannot read $state/alpha/egress/egress_routes.yaml: $state/alpha/egress is a symlink (to ../beta/egress)"
[[ $out == *"$want"* ]] || fail "no refusal naming the symlinked component and its target: $out"
[[ $out == *"gamma: converged"* ]] || fail "gamma did not converge beside the refused alpha: $out"
grep -q gamma2.example.com "$(eg_file gamma)" || fail "gamma's egress file not written"
[[ $(snapshot) == "$before" ]] || fail "alpha's refusal changed something:
$before
---
$(snapshot)"
rc=0
out=$(br plan alpha 2>&1) || rc=$?
((rc == 1)) && [[ $out == *"$state/alpha/egress is a symlink (to ../beta/egress)"* ]] ||
  fail "plan does not show the refusal: exit $rc: $out"
out=$(br once --json alpha 2>&1) || true
[[ $out == *"is a symlink (to ../beta/egress)"* ]] || fail "once --json does not say why: $out"

# --- ... and to a directory outside the state directory --------------------
mkdir -p "$BR_TMP/outside/egress"
rm "$state/alpha/egress"
ln -s "$BR_TMP/outside/egress" "$state/alpha/egress"
before=$(snapshot)
rc=0
out=$(br once alpha 2>&1) || rc=$?
((rc == 1)) && [[ $out == *"$state/alpha/egress is a symlink (to $BR_TMP/outside/egress)"* ]] ||
  fail "egress linked outside the state directory: exit $rc: $out"
[[ -z $(ls -A "$BR_TMP/outside/egress") ]] || fail "written outside the state directory: $(ls -A "$BR_TMP/outside/egress")"
[[ $(snapshot) == "$before" ]] || fail "the refusal changed something"

# --- follow_symlinks names the directory: the layout works ------------------
cp "$cfg" "$BR_TMP/follow.yaml"
echo "follow_symlinks: [$state/alpha/egress]" >>"$BR_TMP/follow.yaml"
"$BR_BIN" --config "$BR_TMP/follow.yaml" once alpha >/dev/null || fail "once with follow_symlinks failed"
grep -q alpha2.example.com "$BR_TMP/outside/egress/egress_routes.yaml" ||
  fail "the symlinked egress directory was not written with follow_symlinks"
wait_for sidecar_settled "$(eg_log alpha)" "$(eg_file alpha)"
rm "$state/alpha/egress"
mkdir "$state/alpha/egress"
br once alpha >/dev/null || fail "once after the link was replaced by a directory failed"

# --- a slug directory that is a symlink -------------------------------------
bottle_create delta
mkdir -p "$BR_TMP/elsewhere"
mv "$state/delta" "$BR_TMP/elsewhere/delta"
ln -s "$BR_TMP/elsewhere/delta" "$state/delta"
bottle_start delta
route delta delta.example.com
pl_hash=$(sha256_of "$(pl_file delta)")
rc=0
out=$(br once delta 2>&1) || rc=$?
((rc == 1)) && [[ $out == *"delta: invalid: cannot read $state/delta: $state/delta is a symlink (to $BR_TMP/elsewhere/delta)"* ]] ||
  fail "a symlinked slug directory: exit $rc: $out"
[[ $(sha256_of "$(pl_file delta)") == "$pl_hash" && ! -e $(eg_file delta) ]] ||
  fail "written through the symlinked slug directory"
wait_for sidecar_quiet "${PL_PID[delta]}"
(($(sidecar_count "$(pl_log delta)" reload) == 0)) || fail "delta's pipelock was signalled"

# --- STATE/.reconciler is a symlink: no record or audit through it ----------
mv "$state/.reconciler" "$BR_TMP/records"
ln -s ../records "$state/.reconciler"
route beta beta2.example.com
touch "$BR_TMP/marker"
eg_hash=$(sha256_of "$(eg_file beta)")
rc=0
out=$(br once beta 2>&1) || rc=$?
((rc == 1)) && [[ $out == *"$state/.reconciler is a symlink (to ../records)"* ]] ||
  fail "a symlinked STATE/.reconciler: exit $rc: $out"
[[ -z $(find "$BR_TMP/records" -newer "$BR_TMP/marker") && $(sha256_of "$(eg_file beta)") == "$eg_hash" ]] ||
  fail "converged, recorded or audited through the symlinked STATE/.reconciler: $(find "$BR_TMP/records" -newer "$BR_TMP/marker")"
# The daemon refuses to start on it, with the same message.
rc=0
out=$(timeout 10 "$BR_BIN" --config "$cfg" run 2>&1) || rc=$?
((rc == 1)) && [[ $out == *"$state/.reconciler is a symlink (to ../records)"* ]] ||
  fail "run with a symlinked STATE/.reconciler: exit $rc: $out"
[[ -z $(find "$BR_TMP/records" -newer "$BR_TMP/marker") ]] || fail "the daemon wrote through the symlink"
rm "$state/.reconciler"
mv "$BR_TMP/records" "$state/.reconciler"
br once beta >/dev/null || fail "once after .reconciler was put back failed"

# --- metadata.json a symlink to a file with a secret: refused, never quoted --
secret=AKIAZZSECRETTOKEN4242
printf '%s\n' "$secret" >"$BR_TMP/secret"
ln -s "$BR_TMP/secret" "$state/alpha/metadata.json"
route alpha alpha3.example.com
rc=0
out=$(br once alpha 2>&1) || rc=$?
json=$(br once --json alpha 2>&1) || true
plan=$(br plan alpha 2>&1) || true
((rc == 1)) && [[ $out == *"alpha: invalid: $state/alpha/metadata.json: $state/alpha/metadata.json is a symlink (to $BR_TMP/secret)"* ]] ||
  fail "a symlinked metadata.json: exit $rc: $out"
grep -rq "$secret" "$state" <<<"" && fail "the secret was written into the state directory"
[[ $out$json$plan != *"$secret"* ]] || fail "the secret was quoted: $out$json$plan"
grep -q alpha3.example.com "$(eg_file alpha)" && fail "alpha converged with a symlinked metadata.json"
rm "$state/alpha/metadata.json"
br once alpha >/dev/null || fail "once after metadata.json was removed failed"

# --- one compose project, two bottles ---------------------------------------
echo '{"compose_project": "shared"}' >"$state/alpha/metadata.json"
echo '{"compose_project": "shared"}' >"$state/beta/metadata.json"
route alpha alpha4.example.com
route beta beta4.example.com
br once alpha >/dev/null || fail "alpha with project shared failed"
eg_hash=$(sha256_of "$(eg_file beta)")
wait_for sidecar_quiet "${EG_PID[beta]}"
beta_loads=$(sidecar_count "$(eg_log beta)")
rc=0
out=$(br once beta 2>&1) || rc=$?
((rc == 1)) && [[ $out == *'beta: invalid: '"$state"'/beta/metadata.json: compose_project "shared" belongs to bottle alpha'* ]] ||
  fail "two bottles naming one compose project: exit $rc: $out"
[[ $(sha256_of "$(eg_file beta)") == "$eg_hash" ]] || fail "beta written with alpha's project"
wait_for sidecar_quiet "${EG_PID[beta]}"
(($(sidecar_count "$(eg_log beta)") == beta_loads)) || fail "beta signalled with alpha's project"
# Another bottle's slug is that bottle's project.
echo '{"compose_project": "gamma"}' >"$state/beta/metadata.json"
rc=0
out=$(br once beta 2>&1) || rc=$?
((rc == 1)) && [[ $out == *'compose_project "gamma" belongs to bottle gamma (it is that bottle'"'"'s slug'* ]] ||
  fail "a project that is another bottle's slug: exit $rc: $out"
# A project of its own: beta converges.
echo '{"compose_project": "beta-own"}' >"$state/beta/metadata.json"
br once beta >/dev/null || fail "beta with a project of its own failed"

# --- the daemon refuses the same way, in status and in its log ---------------
rm "$state/delta"
start_daemon "$cfg"
wait_for all_converged 3
rm -r "$state/alpha/egress"
ln -s ../beta/egress "$state/alpha/egress"
refused() { [[ $(status_field "$1" phase) == invalid && $(status_field "$1" message) == *"$2"* ]]; }
wait_for refused alpha "$state/alpha/egress is a symlink (to ../beta/egress)"
before=$(snapshot)
route alpha alpha5.example.com
wait_for refused alpha "$state/alpha/egress is a symlink (to ../beta/egress)"
wait_for daemon_log_has "alpha.*$state/alpha/egress is a symlink \\(to \\.\\./beta/egress\\)"
[[ $(snapshot) == "$before" ]] || fail "the daemon's refusal of alpha changed something"
# A metadata.json linked to a secret: refused; the secret is in no status or log.
ln -s "$BR_TMP/secret" "$state/gamma/metadata.json"
route gamma gamma5.example.com
wait_for refused gamma "$state/gamma/metadata.json is a symlink (to $BR_TMP/secret)"
[[ $(daemon_status)$(cat "$DAEMON_LOG") != *"$secret"* ]] || fail "the daemon quoted the secret"
stop_daemon
echo ok
