#!/usr/bin/env bash
# setup.sh: installs what bottle-reconciler needs to build and to run its
# tests, with apt, when it is missing. Run as root on Debian 12; elsewhere it
# prints the Debian package names and installs nothing.
set -euo pipefail

# build: compiler, CMake, pkg-config and the libraries found through it;
# clang-format checks the code style (tests/lint)
build_pkgs=(gcc make cmake pkg-config clang-format libuv1-dev libyaml-dev libjansson-dev nettle-dev)
# tests and demo: sha256sum/awk/etc. come with coreutils; inotifywait and jq
# are the shell alternative the benchmark compares against; python3 checks
# canonical JSON; systemd gives systemd-analyze for the unit file check;
# groff-base lints the man page; mitmproxy (mitmdump) and curl run the real
# egress proxy of contrib/egress and a client through it (test_egress_*);
# prometheus gives promtool, which checks the metrics file, and
# prometheus-node-exporter reads it as a host's node_exporter does
# (test_daemon_metrics starts its own on a free port; on a host that runs
# systemd, Debian also starts both packages' services)
# gnupg verifies and, in the tests, makes commit signatures for the GitOps
# sync of contrib/gitops (which also needs git and jq on a host); python3-yaml
# reads the manifests of contrib/k8s (test_k8s_configmap)
test_pkgs=(coreutils gawk procps inotify-tools jq python3 python3-yaml systemd git groff-base mitmproxy curl
  prometheus prometheus-node-exporter gnupg)

# optional: a Docker engine for the docker driver's tests (label docker), which
# are skipped without one, and docker-compose, which runs
# contrib/compose/docker-compose.yaml in test_docker_compose. Installed when
# this runs as root; never required.
optional_pkgs=(docker.io docker-compose)

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

all=("${build_pkgs[@]}" "${test_pkgs[@]}")
missing=()
optional_missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${all[@]}"; do
    installed "$p" || missing+=("$p")
  done
  for p in "${optional_pkgs[@]}"; do
    installed "$p" || optional_missing+=("$p")
  done
else
  missing=("${all[@]}")
fi
can_install=false
[[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1 && can_install=true
$can_install || ((${#optional_missing[@]} == 0)) ||
  echo "setup: optional, not installed: ${optional_missing[*]} (the docker tests are skipped without an engine)"
$can_install || optional_missing=()

if ((${#missing[@]} + ${#optional_missing[@]} == 0)); then
  echo "setup: all dependencies are installed"
  exit 0
fi
if ! $can_install; then
  echo "setup: missing packages (Debian names): ${missing[*]}"
  echo "setup: install them as root with: apt-get install -y ${missing[*]}"
  exit 1
fi
missing+=("${optional_missing[@]}")
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
