#!/usr/bin/env bash
# System tests of `edit` with EDITOR set to scripts, judged by the fragment
# files, the live egress file after `once`, the sidecars' logs, the exit code
# and the message: a valid addition is installed and its diff printed; an
# invalid save comes back with the errors on top and the fixed one is
# installed; no change writes nothing; an emptied file removes the fragment;
# the same invalid save twice is refused and installs nothing.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
br_tmpdir
source "$here/approvals.sh"
use_fast_python
cfg=$BR_TMP/br.yaml
bottles_config "$cfg"
br() { "$BR_BIN" --config "$cfg" "$@"; }
state=$BR_TMP/state
d=$state/e/routes.d
unset VISUAL

# editor NAME BODY: an editor script $BR_TMP/NAME.sh that records each round
# (NAME.sh.rounds), what it was shown (NAME.sh.seen) and the file it was given
# (NAME.sh.paths), then runs BODY on "$1". It fails from the 5th round on,
# so a loop that never ends is an editor failure, not a hung test.
editor() {
  local f=$BR_TMP/$1.sh
  cat >"$f" <<SH
#!/bin/sh
n=\$((\$(cat "\$0.rounds" 2>/dev/null || echo 0) + 1))
echo "\$n" >"\$0.rounds"
[ "\$n" -le 4 ] || exit 1
echo "\$1" >>"\$0.paths"
{ echo "--- round \$n"; cat "\$1"; } >>"\$0.seen"
$2
SH
  chmod +x "$f"
}
rounds() { cat "$BR_TMP/$1.sh.rounds" 2>/dev/null || echo 0; }
temps_gone() {
  local p
  while read -r p; do
    [[ ! -e $p ]] || fail "edit left its temporary file $p"
  done <"$BR_TMP/$1.sh.paths"
}

bottle_create e
bottle_start e
printf 'routes:\n  - {host: first.example.com, path_allowlist: [/]}\n' >"$BR_TMP/50-operator.yaml"
brx apply e "$BR_TMP/50-operator.yaml"
((RC == 0)) || fail "apply 50-operator.yaml: rc $RC: $(outerr)"
brx once e
((RC == 0)) || fail "once e: rc $RC: $(outerr)"

# --- (a) a valid route appended: installed, the diff printed -----------------
editor append 'printf "  - {host: edited.example.com, path_allowlist: [/e/]}\n" >>"$1"'
EDITOR=$BR_TMP/append.sh brx edit e
((RC == 0)) || fail "edit with a valid addition: rc $RC: $(outerr)"
grep -q "^e: installed: $d/50-operator.yaml" "$BR_TMP/out" || fail "edit did not say what it installed: $(outerr)"
grep -q '^  + host edited.example.com  paths /e/' "$BR_TMP/out" || fail "edit printed no diff: $(outerr)"
[[ $(rounds append) == 1 ]] || fail "the editor ran $(rounds append) times for a valid save"
grep -qx 'routes:' "$BR_TMP/append.sh.seen" && grep -q 'first.example.com' "$BR_TMP/append.sh.seen" ||
  fail "the editor was not shown the fragment: $(cat "$BR_TMP/append.sh.seen")"
diff <(cat "$BR_TMP/50-operator.yaml"; echo '  - {host: edited.example.com, path_allowlist: [/e/]}') "$d/50-operator.yaml" ||
  fail "the installed fragment is not what the editor saved"
temps_gone append
brx once e
((RC == 0)) || fail "once after edit: rc $RC: $(outerr)"
python3 -c 'import json, sys
r = [r for r in json.load(open(sys.argv[1]))["routes"] if r["host"] == "edited.example.com"]
assert r == [{"host": "edited.example.com", "path_allowlist": ["/e/"]}], r' "$(eg_file e)" ||
  fail "egress does not route the edited host: $(cat "$(eg_file e)")"
wait_for sidecar_has "$(eg_log e)" reload "$(sha256_of "$(eg_file e)")" ok

# --- (b) invalid, then fixed after seeing the errors --------------------------
editor fix '
if grep -q "^# bottle-reconciler: " "$1"; then
  printf "routes:\n  - {host: fixed.example.com, path_allowlist: [/f/]}\n" >"$1"
else
  printf "routes:\n  - {host: fixed.example.com, path_allowlist: [f]}\n" >"$1"
fi'
EDITOR=$BR_TMP/fix.sh brx edit e 10-fix.yaml
((RC == 0)) || fail "edit that fixes its error: rc $RC: $(outerr)"
[[ $(rounds fix) == 2 ]] || fail "the editor ran $(rounds fix) times, expected 2: $(cat "$BR_TMP/fix.sh.seen")"
python3 - "$BR_TMP/fix.sh.seen" "$d/10-fix.yaml" <<'PY' || fail "what the editor saw: $(cat "$BR_TMP/fix.sh.seen")"
import re, sys
text = open(sys.argv[1]).read()
r1, r2 = re.split(r"^--- round \d+\n", text, flags=re.M)[1:]
assert "# bottle-reconciler: " not in r1, r1
assert "routes: []" in r1, r1  # a new fragment starts from a template
errors = [l for l in r2.splitlines() if l.startswith("# bottle-reconciler: ")]
assert errors and r2.startswith(errors[0]), r2  # the errors on top
assert any(sys.argv[2] + ":" in l and "path_allowlist[0]" in l and 'does not start with "/"' in l for l in errors), errors
assert "path_allowlist: [f]" in r2, r2  # with the text as it was saved
PY
[[ $(cat "$d/10-fix.yaml") == $'routes:\n  - {host: fixed.example.com, path_allowlist: [/f/]}' ]] ||
  fail "the installed fragment is not the fixed save: $(cat "$d/10-fix.yaml")"
temps_gone fix
brx once e
grep -q '"host": "fixed.example.com"' "$(eg_file e)" || fail "egress does not route the fixed host"
wait_for sidecar_has "$(eg_log e)" reload "$(sha256_of "$(eg_file e)")" ok

# --- (c) no change: nothing written -------------------------------------------
editor noop ':'
before=$(tree_sum "$d")
inode=$(stat -c %i "$d/50-operator.yaml")
EDITOR=$BR_TMP/noop.sh brx edit e
((RC == 0)) && grep -q '^no changes$' "$BR_TMP/out" || fail "edit without a change: rc $RC: $(outerr)"
EDITOR=$BR_TMP/noop.sh brx edit e 20-new.yaml
((RC == 0)) && grep -q '^no changes$' "$BR_TMP/out" || fail "edit of a new fragment without a change: rc $RC: $(outerr)"
[[ ! -e $d/20-new.yaml ]] || fail "an unchanged new fragment was written"
[[ $(tree_sum "$d") == "$before" && $(stat -c %i "$d/50-operator.yaml") == "$inode" ]] ||
  fail "an edit without a change wrote a fragment"
temps_gone noop

# --- (d) emptied: the fragment is removed -------------------------------------
editor empty ': >"$1"'
EDITOR=$BR_TMP/empty.sh brx edit e 10-fix.yaml
((RC == 0)) || fail "edit that empties the fragment: rc $RC: $(outerr)"
[[ ! -e $d/10-fix.yaml ]] || fail "an emptied fragment was not removed: $(cat "$d/10-fix.yaml")"
grep -q '^  - host fixed.example.com' "$BR_TMP/out" || fail "the removal's diff was not printed: $(outerr)"
brx once e
! grep -q 'fixed.example.com' "$(eg_file e)" || fail "egress still routes the host of the removed fragment"
wait_for sidecar_has "$(eg_log e)" reload "$(sha256_of "$(eg_file e)")" ok

# --- (e) the same invalid save twice: refused, nothing installed ----------------
editor bad 'printf "routes:\n  - {host: \"*.bad.example\", path_allowlist: [/]}\n" >"$1"'
before=$(tree_sum "$d")
eg_hash=$(sha256_of "$(eg_file e)")
EDITOR=$BR_TMP/bad.sh brx edit e 30-bad.yaml
((RC == 1)) || fail "edit with the same invalid save twice: rc $RC: $(outerr)"
[[ $(rounds bad) == 2 ]] || fail "the editor ran $(rounds bad) times, expected 2"
grep -q "$d/30-bad.yaml:2:[0-9]*: routes\[0\].host: \"\*.bad.example\" is a wildcard" "$BR_TMP/err" ||
  fail "the refusal does not name the field: $(outerr)"
grep -q '^e: refused' "$BR_TMP/out" || fail "not reported refused: $(outerr)"
[[ ! -e $d/30-bad.yaml && $(tree_sum "$d") == "$before" ]] || fail "a refused edit installed something"
temps_gone bad
brx plan e
((RC == 0)) && file_is "$(eg_file e)" "$eg_hash" || fail "a refused edit left changes pending: rc $RC: $(outerr)"

echo ok
