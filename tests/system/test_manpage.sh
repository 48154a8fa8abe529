#!/usr/bin/env bash
# The man page renders without warnings and lists exactly the commands and
# options that --help lists.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
page=$here/../../doc/bottle-reconciler.1
command -v mandoc >/dev/null || command -v groff >/dev/null || fail "neither mandoc nor groff: contrib/setup.sh installs groff-base"
if command -v mandoc >/dev/null; then
  mandoc -T lint -W warning "$page" || fail "mandoc lint"
else
  out=$(LC_ALL=C groff -mandoc -T utf8 -ww -z "$page" 2>&1) || fail "groff: $out"
  [[ -z $out ]] || fail "groff warnings: $out"
fi
help=$("$BR_BIN" --help)
for cmd in run once plan check apply adopt add-route remove-route revoke edit status resync trust-record; do
  grep -q "^  $cmd" <<<"$help" || fail "--help does not list $cmd"
  grep -q "^\.Cm $cmd" "$page" || fail "the man page does not list $cmd"
done
for opt in config state-dir log-level log-format help version name json wait tree source-root format; do
  grep -q -- "--$opt" <<<"$help" || fail "--help does not list --$opt"
  grep -q -- "Fl -$opt\|Fl .*, Fl -$opt" "$page" || fail "the man page does not list --$opt"
done
# Options of one command: in that command's --help and in the man page.
for pair in adopt:all add-route:host add-route:path add-route:auth-scheme add-route:token-ref add-route:id \
  add-route:actor remove-route:path; do
  cmd=${pair%%:*} opt=${pair#*:}
  grep -q -- "--$opt" <<<"$("$BR_BIN" "$cmd" --help)" || fail "$cmd --help does not list --$opt"
  grep -q -- "Fl -$opt" "$page" || fail "the man page does not list --$opt"
done
echo ok
