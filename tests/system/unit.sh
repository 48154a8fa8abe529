# unit.sh: runs programs as the shipped systemd unit runs the daemon: as
# root, with no capabilities but the unit's CapabilityBoundingSet, and no
# new privileges. Source it after lib.sh. Defines functions only.
# shellcheck shell=bash
#
#   unit_caps [CAP...]              print the unit's CapabilityBoundingSet, less each CAP named
#                                   (CAP_KILL ...), as setpriv's list: "+chown,+kill"
#   unit_cap_mask [CAP...]          print that set as the hex mask /proc/PID/status shows (CapEff)
#   as_unit_wrapper FILE PROG [CAP...]  write an executable FILE that execs PROG with its arguments as the
#                                   unit would, less each CAP named
#   as_user_wrapper FILE PROG UID   write an executable FILE that execs PROG as UID:UID, no groups

UNIT_FILE=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../contrib" && pwd)/bottle-reconciler.service

_unit_cap_names() {
  local line cap drop keep
  line=$(sed -n 's/^CapabilityBoundingSet=//p' "$UNIT_FILE")
  [[ -n $line ]] || fail "$UNIT_FILE has no CapabilityBoundingSet="
  for cap in $line; do
    keep=1
    for drop in "$@"; do
      [[ $cap == "$drop" ]] && keep=0
    done
    ((keep)) && echo "$cap"
  done
}

unit_caps() {
  local cap list=""
  for cap in $(_unit_cap_names "$@"); do
    cap=${cap#CAP_}
    list+=${list:+,}+${cap,,}
  done
  echo "$list"
}

unit_cap_mask() {
  local cap mask=0 n
  for cap in $(_unit_cap_names "$@"); do
    n=$(python3 -c "import sys; print({'CAP_CHOWN': 0, 'CAP_DAC_OVERRIDE': 1, 'CAP_DAC_READ_SEARCH': 2,
      'CAP_FOWNER': 3, 'CAP_FSETID': 4, 'CAP_KILL': 5, 'CAP_SETGID': 6, 'CAP_SETUID': 7,
      'CAP_SYS_PTRACE': 19}[sys.argv[1]])" "$cap") || fail "unit_cap_mask does not know $cap"
    mask=$((mask | (1 << n)))
  done
  printf '%016x\n' "$mask"
}

as_unit_wrapper() {
  local file=$1 prog=$2 caps
  shift 2
  caps=$(unit_caps "$@")
  cat >"$file" <<SH
#!/bin/sh
exec setpriv --reuid=0 --regid=0 --clear-groups --no-new-privs --inh-caps=-all${caps:+,$caps} \\
  --bounding-set=-all${caps:+,$caps} -- "$prog" "\$@"
SH
  chmod +x "$file"
}

as_user_wrapper() {
  cat >"$1" <<SH
#!/bin/sh
exec setpriv --reuid=$3 --regid=$3 --clear-groups -- "$2" "\$@"
SH
  chmod +x "$1"
}
