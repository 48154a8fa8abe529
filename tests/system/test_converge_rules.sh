#!/usr/bin/env bash
# System tests of converge rules with `once` against real sidecar processes:
# sources and their merge order, symlinked fragments, unmanaged and waiting
# bottles, prune mode, the validate command, the exec driver, an owed reload
# after a crash, and a single-file bind mount (EBUSY) when run as root.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
br() { "$BR_BIN" --config "$cfg" "$@"; }

# --- two sources, merged in order; {project} from metadata.json ------------
mkdir -p "$BR_TMP/gitops/team-a"
bottles_config "$cfg" <<YAML
sources:
  - "{state_dir}/{slug}/routes.d"
  - "$BR_TMP/gitops/{project}"
YAML
bottle_create one
bottle_start one
echo '{"compose_project": "team-a"}' >"$BR_TMP/state/one/metadata.json"
bottle_fragment one 10-local.yaml <<'YAML'
routes:
  - host: api.example.com
    path_allowlist: [/local/]
    auth_scheme: Bearer
    token_env: LOCAL_TOKEN
YAML
cat >"$BR_TMP/gitops/team-a/00-git.yaml" <<'YAML'
routes:
  - host: api.example.com
    path_allowlist: [/git/, /local/]
    auth_scheme: token
    token_env: GIT_TOKEN
YAML
br once one >"$BR_TMP/out" 2>"$BR_TMP/err" || fail "once: $(cat "$BR_TMP/out" "$BR_TMP/err")"
# routes.d comes first as a source, so its auth wins and its path comes first
python3 - "$(eg_file one)" <<'PY' || fail "merge across sources is wrong: $(cat "$(eg_file one)")"
import json, sys
cfg = json.load(open(sys.argv[1]))
assert cfg["routes"] == [{"host": "api.example.com", "path_allowlist": ["/local/", "/git/"],
                          "auth_scheme": "Bearer", "token_env": "LOCAL_TOKEN"}], cfg
PY
grep -q "warning: .*00-git.yaml:2: host api.example.com: auth token/GIT_TOKEN ignored, auth already set by .*10-local.yaml:2" "$BR_TMP/err" ||
  fail "no conflict warning naming both files: $(cat "$BR_TMP/err")"
wait_for sidecar_has "$(eg_log one)" reload "$(sha256_of "$(eg_file one)")" ok

# --- symlinked fragments: inside the source (ConfigMap ..data) yes, outside no
d=$BR_TMP/state/one/routes.d
mkdir -p "$d/..2026_11_27"
printf 'routes:\n  - host: cm.example.com\n    path_allowlist: [/]\n' >"$d/..2026_11_27/cm.yaml"
ln -s ..2026_11_27 "$d/..data"
ln -s ..data/cm.yaml "$d/cm.yaml"
br once one >/dev/null || fail "once with a ConfigMap-style symlinked fragment failed"
grep -q '"host": "cm.example.com"' "$(eg_file one)" || fail "symlinked fragment inside the source not applied"
printf 'routes:\n  - host: outside.example.com\n    path_allowlist: [/]\n' >"$BR_TMP/outside.yaml"
ln -s "$BR_TMP/outside.yaml" "$d/outside.yaml"
eg_hash=$(sha256_of "$(eg_file one)")
rc=0
br once one >/dev/null 2>"$BR_TMP/err" || rc=$?
((rc == 1)) || fail "a symlink leading outside its source was accepted"
grep -q "outside.yaml: symlink leads outside its source directory" "$BR_TMP/err" || fail "$(cat "$BR_TMP/err")"
[[ $(sha256_of "$(eg_file one)") == "$eg_hash" ]] || fail "refused symlink changed the egress file"
rm "$d/outside.yaml"

# --- a fragment name on something else than a file: an error naming it --------
mkdir "$d/dir.yaml"
mkfifo "$d/fifo.yaml"
rc=0
br once one >/dev/null 2>"$BR_TMP/err" || rc=$?
((rc == 1)) || fail "a directory and a FIFO named like fragments were accepted"
grep -q "dir.yaml: not a regular file, expected a fragment file" "$BR_TMP/err" || fail "$(cat "$BR_TMP/err")"
grep -q "fifo.yaml: not a regular file, expected a fragment file" "$BR_TMP/err" || fail "$(cat "$BR_TMP/err")"
[[ $(sha256_of "$(eg_file one)") == "$eg_hash" ]] || fail "a refused fragment changed the egress file"
rmdir "$d/dir.yaml"
rm "$d/fifo.yaml"

# --- unmanaged (no source) and waiting (no pipelock file) ---------------------
mkdir -p "$BR_TMP/state/bare"
out=$(br once bare) || fail "once on a bottle without sources failed: $out"
[[ $out == "bare: unmanaged: "* ]] || fail "bottle without sources not left alone: $out"
mkdir -p "$BR_TMP/state/nopl/routes.d" "$BR_TMP/state/nopl/egress"
printf 'routes: []\n' >"$BR_TMP/state/nopl/routes.d/a.yaml"
rc=0
out=$(br once nopl) || rc=$?
((rc == 1)) && [[ $out == "nopl: waiting: waiting for its pipelock config "* ]] || fail "missing pipelock file: rc $rc: $out"
[[ ! -e $BR_TMP/state/nopl/pipelock/pipelock.yaml && ! -e $(eg_file nopl) ]] || fail "a waiting bottle got files"
rm -rf "$BR_TMP/state/bare" "$BR_TMP/state/nopl"

# --- prune mode: removes only hosts this tool added ---------------------------
bottles_config "$cfg" <<YAML
pipelock:
  mirror: prune
  settle_ms: 150
  reload: {driver: signal, pidfile: "{state_dir}/{slug}/run/pipelock.pid", grace_ms: 0}
YAML
bottle_create two
bottle_start two
bottle_fragment two a.yaml <<'YAML'
routes:
  - {host: added.example.com, path_allowlist: [/]}
  - {host: pypi.org, path_allowlist: [/simple/]}
YAML
br once two >/dev/null || fail "once (prune, add) failed"
grep -q '^  - added.example.com$' "$(pl_file two)" || fail "host not added in prune mode"
bottle_fragment two a.yaml <<'YAML'
routes: []
YAML
br once two >/dev/null || fail "once (prune, remove) failed"
! grep -q 'added.example.com' "$(pl_file two)" || fail "prune left a host it added"
grep -q '^  - pypi.org       # package index$' "$(pl_file two)" || fail "prune removed a host it did not add"
# A record a machine crash emptied (additive mode writes it without fsync)
# does not verify: an empty list with a warning; prune leaves that host in place.
bottle_fragment two a.yaml <<'YAML'
routes:
  - {host: kept.example.com, path_allowlist: [/]}
YAML
br once two >/dev/null || fail "once (prune, add kept) failed"
: >"$BR_TMP/state/.reconciler/added/two.json"
bottle_fragment two a.yaml <<'YAML'
routes: []
YAML
br once two >"$BR_TMP/once.out" 2>&1 || fail "once with an empty added-hosts record failed: $(cat "$BR_TMP/once.out")"
grep -q 'added-hosts record for two does not verify: it cannot be parsed' "$BR_TMP/once.out" ||
  fail "no warning about the unreadable record: $(cat "$BR_TMP/once.out")"
grep -q '^  - kept.example.com$' "$(pl_file two)" || fail "prune removed a host its unreadable record may not have listed"
wait_for sidecar_has "$(pl_log two)" '' "$(sha256_of "$(pl_file two)")" ok
[[ ! -s $(eg_file two) ]] || python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["routes"] == []' "$(eg_file two)" ||
  fail "egress still routes removed hosts"

# --- additive mode records each host it adds; a later switch to prune uses that
bottles_config "$cfg"
bottle_create four
bottle_start four
for h in first second; do
  printf 'routes:\n  - {host: %s.example.com, path_allowlist: [/]}\n' "$h" >"$BR_TMP/state/four/routes.d/$h.yaml"
  br once four >/dev/null || fail "once (additive, add $h) failed"
done
bottles_config "$cfg" <<YAML
pipelock:
  mirror: prune
  reload: {driver: signal, pidfile: "{state_dir}/{slug}/run/pipelock.pid", grace_ms: 0}
YAML
rm "$BR_TMP/state/four/routes.d/"*.yaml
br once four >/dev/null || fail "once (prune after additive) failed"
! grep -Eq '(first|second).example.com' "$(pl_file four)" ||
  fail "prune kept a host additive mode added: $(cat "$(pl_file four)")"
grep -q '^  - pypi.org       # package index$' "$(pl_file four)" || fail "prune removed a host it did not add"

# --- validate refuses: nothing changes; exec driver; owed reload after a crash -
cat >"$BR_TMP/refuse.sh" <<'SH'
#!/bin/sh
grep -q forbidden.example.com "$1" && { echo "policy: forbidden.example.com is not allowed"; exit 3; }
exit 0
SH
cat >"$BR_TMP/reload.sh" <<'SH'
#!/bin/sh
# exec driver: signal the sidecar whose pidfile is given
kill -HUP "$(cat "$1")"
SH
chmod +x "$BR_TMP/refuse.sh" "$BR_TMP/reload.sh"
bottles_config "$cfg" <<YAML
egress:
  validate: ["$BR_TMP/refuse.sh", "{file}"]
  reload: {driver: exec, argv: ["$BR_TMP/reload.sh", "{state_dir}/{slug}/run/egress.pid"], timeout_ms: 5000}
YAML
bottle_create three
bottle_start three
bottle_fragment three a.yaml <<'YAML'
routes:
  - {host: ok.example.com, path_allowlist: [/]}
YAML
br once three >/dev/null || fail "once with validate + exec driver failed"
wait_for sidecar_has "$(eg_log three)" reload "$(sha256_of "$(eg_file three)")" ok
eg_hash=$(sha256_of "$(eg_file three)")
pl_hash=$(sha256_of "$(pl_file three)")
pl_reloads=$(sidecar_count "$(pl_log three)" reload)
bottle_fragment three b.yaml <<'YAML'
routes:
  - {host: forbidden.example.com, path_allowlist: [/]}
YAML
rc=0
br once three >/dev/null 2>"$BR_TMP/err" || rc=$?
((rc == 1)) || fail "a refused staged file did not fail once"
grep -q "refused the new file (exit 3: policy: forbidden.example.com is not allowed)" "$BR_TMP/err" || fail "$(cat "$BR_TMP/err")"
[[ $(sha256_of "$(eg_file three)") == "$eg_hash" ]] || fail "refused file replaced the live one"
# Every check passes before the first rename: egress's refusal must not leave
# the host in pipelock's allowlist, nor pipelock signalled.
[[ $(sha256_of "$(pl_file three)") == "$pl_hash" ]] ||
  fail "pipelock was widened for a host egress's validate refused: $(cat "$(pl_file three)")"
[[ $(sidecar_count "$(pl_log three)" reload) == "$pl_reloads" ]] || fail "pipelock was signalled for a refused change"
ls -a "$BR_TMP/state/three/egress" | grep -q '\.br-tmp\.' && fail "refused temp file left behind"
rm "$BR_TMP/state/three/routes.d/b.yaml"

# a reload owed from a crash: the record makes `once` reload although the
# file matches. Here it is in the layout before reload files (pending/, one
# file per record), which `once` moves over first.
lines=$(sidecar_count "$(eg_log three)" reload)
mkdir -p "$BR_TMP/state/.reconciler/pending"
echo 0 >"$BR_TMP/state/.reconciler/pending/three.egress"
out=$(br once three) || fail "once with an owed reload failed: $out"
wait_for sidecar_count_ge $((lines + 1)) "$(eg_log three)" reload
[[ ! -e $BR_TMP/state/.reconciler/pending ]] || fail "the old pending/ directory is still there"
reloads=$BR_TMP/state/.reconciler/reloads/three
grep -qx 'egress   reload done 0000000000000000000' "$reloads" || fail "owed reload not cleared: $(cat "$reloads")"
# A reload file a machine crash left empty owes both sidecars a reload
# (pipelock itself skips a reload of the bytes it loaded moments ago).
: >"$reloads"
lines=$(sidecar_count "$(eg_log three)" reload)
out=$(br once three) || fail "once with an empty reload file failed: $out"
[[ $out == *"0 files written, 2 reloads"* ]] || fail "once with an empty reload file: $out"
wait_for sidecar_count_ge $((lines + 1)) "$(eg_log three)" reload
[[ $(grep -c ' reload done ' "$reloads") == 2 ]] || fail "owed reloads not cleared: $(cat "$reloads")"
# A symlink in its place: the bottle is invalid, and says why; plan goes on
# without it and warns.
mv "$reloads" "$BR_TMP/reloads.three"
ln -s "$BR_TMP/reloads.three" "$reloads"
rc=0
out=$(br once three 2>/dev/null) || rc=$?
((rc == 1)) && [[ $out == *"three: invalid: cannot read its reload file $reloads: it is a symlink, expected a regular file; remove it"* ]] ||
  fail "a symlinked reload file: rc $rc: $out"
rc=0
br plan three >"$BR_TMP/plan.out" 2>&1 || rc=$?
((rc == 0)) && grep -q "reloads/three: cannot open: Too many levels of symbolic links" "$BR_TMP/plan.out" ||
  fail "plan with a symlinked reload file: rc $rc: $(cat "$BR_TMP/plan.out")"
rm "$reloads"
mv "$BR_TMP/reloads.three" "$reloads"

# --- a single-file bind mount makes rename fail with EBUSY (root only) --------
if [[ $(id -u) == 0 ]] && unshare --mount true 2>/dev/null; then
  out=$(unshare --mount bash -c '
    touch "$1.src" && mount --bind "$1.src" "$1" || exit 99
    printf "routes:\n  - {host: busy.example.com, path_allowlist: [/]}\n" >"$2/busy.yaml"
    "$3" --config "$4" once three 2>&1; echo "rc=$?"' _ "$(eg_file three)" "$BR_TMP/state/three/routes.d" "$BR_BIN" "$cfg")
  [[ $out != *rc=99* ]] || fail "could not set up the bind mount"
  grep -q "EBUSY: the file is itself a mount point (a single-file bind mount); bind-mount its directory instead" <<<"$out" ||
    fail "EBUSY not explained: $out"
  grep -q "rc=1" <<<"$out" || fail "once did not fail on EBUSY: $out"
  # The reload was marked owed before the rename was tried: a crash at that
  # point could not have left a renamed file without the mark.
  grep -q '^egress   reload owed ' "$reloads" || fail "no owed mark before the rename: $(cat "$reloads")"
else
  echo "note: not root or no mount namespaces: the EBUSY case was not run"
fi
echo ok
