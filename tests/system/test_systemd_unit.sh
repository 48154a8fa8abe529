#!/usr/bin/env bash
# The shipped systemd unit passes `systemd-analyze verify` (with ExecStart
# pointed at the built binary, since /usr/local/bin may hold none here).
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
br_tmpdir
command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing: contrib/setup.sh installs package systemd"
unit=$BR_TMP/bottle-reconciler.service
sed "s|/usr/local/bin/bottle-reconciler|$BR_BIN|" "$here/../../contrib/bottle-reconciler.service" >"$unit"
# --man=no: the man page is checked where it is built, not looked up in man(1)
out=$(systemd-analyze verify --man=no "$unit" 2>&1) || fail "systemd-analyze verify failed: $out"
# verify exits 0 on some warnings; a line naming the unit is a finding
if grep -F "bottle-reconciler.service" <<<"$out"; then
  fail "systemd-analyze verify reported: $out"
fi
echo ok
