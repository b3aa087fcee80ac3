#!/usr/bin/env bash
# Installs the Debian 12 packages hashwall needs to build and test, skipping those that
# are already present. Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libopencv-dev libopencv-contrib-dev
  libfaiss-dev libopenblas-dev
  libcli11-dev catch2 nlohmann-json3-dev
  libsqlite3-dev sqlite3 libssl-dev libcpp-httplib-dev libmicrohttpd-dev
  libpq-dev postgresql haproxy
  libavformat-dev libavcodec-dev libswscale-dev libwebp-dev
  clang-format
)
# Extra packages a caller asks for (e.g. python3-matplotlib for the plots).
PACKAGES+=("$@")

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "deps: all ${#PACKAGES[@]} packages present" >&2
  exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
