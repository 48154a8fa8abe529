#!/usr/bin/env bash
# setup.sh: installs what bottle-reconciler needs to build and to run its
# tests, with apt, when it is missing. Run as root on Debian 12; elsewhere it
# prints the Debian package names and installs nothing.
set -euo pipefail

# build: compiler, CMake, pkg-config and the libraries found through it
build_pkgs=(gcc make cmake pkg-config libuv1-dev libyaml-dev libjansson-dev libssl-dev
  libcurl4-openssl-dev libsystemd-dev)
# tests and demo: sha256sum/awk/etc. come with coreutils; inotifywait and jq
# are the shell alternative the benchmark compares against; python3 checks
# canonical JSON; systemd gives systemd-analyze for the unit file check;
# groff-base lints the man page
test_pkgs=(coreutils gawk procps inotify-tools jq python3 systemd git groff-base)

all=("${build_pkgs[@]}" "${test_pkgs[@]}")
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${all[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
else
  missing=("${all[@]}")
fi

if ((${#missing[@]} == 0)); then
  echo "setup: all dependencies are installed"
  exit 0
fi
if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: missing packages (Debian names): ${missing[*]}"
  echo "setup: install them as root with: apt-get install -y ${missing[*]}"
  exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
