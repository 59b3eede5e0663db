#!/usr/bin/env bash
# Installs every Debian package mup needs to build, test and benchmark.
# Idempotent: skips what is installed. Works as root, uses sudo otherwise.
#   scripts/install-deps.sh          build + test dependencies
#   scripts/install-deps.sh --bench  also the peers the benchmark compares against
set -euo pipefail
PKGS=(
  build-essential make cmake ninja-build pkg-config git
  libssl-dev libzstd-dev libdivsufsort-dev libcurl4-openssl-dev libboost-dev
  libcli11-dev nlohmann-json3-dev libexpected-dev
  libsqlite3-dev sqlite3 libtomlplusplus-dev libsystemd-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  zstd clang libclang-rt-14-dev curl
  prometheus  # promtool: the /metrics tests check the exposition with `promtool check metrics`
)
if [[ "${1:-}" == "--bench" ]]; then
  PKGS+=(casync zsync xdelta3 bsdiff ostree rsync time python3 dpkg-dev bc haproxy nginx wrk)
fi
missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
