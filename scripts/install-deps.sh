#!/bin/sh
# Installs the Debian 12 packages Tern needs to build, run and test: every
# program a test or benchmark runs is in this list (a test that calls a tool
# the list lacks fails on a fresh machine).
# Idempotent and quiet when everything is present. Installing needs root, or
# sudo for a user allowed to use it.
set -eu
PACKAGES="build-essential cmake pkg-config g++ clang libclang-rt-14-dev
 liburing-dev librocksdb-dev libjemalloc-dev libc-ares-dev libssl-dev libtomlplusplus-dev
 libgtest-dev libgmock-dev libbenchmark-dev libcrypt-dev
 openssl swaks libnet-ssleay-perl curl dnsmasq-base python3 python3-pytest python3-aiosmtpd python3-flufl.bounce
 fetchmail procps iproute2 e2fsprogs util-linux"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing$missing"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-deps: these Debian packages are missing:$missing" >&2
    echo "install-deps: installing them needs root: run 'make' as root, install sudo, or install them as root with" >&2
    echo "  apt-get install$missing" >&2
    exit 1
  fi
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
