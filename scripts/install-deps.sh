#!/bin/sh
# Installs the Debian 12 packages Tern needs to build, run and test.
# Idempotent and quiet when everything is present.
set -eu
PACKAGES="build-essential cmake pkg-config g++ clang libclang-rt-14-dev
 liburing-dev librocksdb-dev libc-ares-dev libssl-dev libtomlplusplus-dev
 libgtest-dev libgmock-dev libbenchmark-dev libcrypt-dev
 openssl swaks libnet-ssleay-perl curl dnsmasq-base python3 python3-pytest python3-aiosmtpd python3-flufl.bounce fetchmail procps"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
