#!/bin/sh
# Tries the README's set-up as a new user would, on a fresh Debian 12
# (bookworm) minbase root: debootstrap it, add what the README says a new
# machine needs first (git, make), clone this checkout, then run `make run`
# (ternd must answer SMTP and take a message) and `make test`. Also checks
# that scripts/install-deps.sh, run by a user without root or sudo, says
# what it needs instead of failing obscurely.
#
# Usage (as root): scripts/fresh-check.sh [ROOT_DIR]   (default /var/tmp/tern-fresh)
#   FRESH_SKIP_TEST=1  stop after `make run` (the test suite takes a while)
#
# The root reaches Debian's archive as this machine's apt does: the archive
# and apt settings are read from /etc/apt, not written here. Too slow for
# every CI run; run it when set-up changes and quote its report.
set -eu

[ "$(id -u)" -eq 0 ] || { echo "fresh-check: run as root (debootstrap and chroot need it)" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)
root=${1:-/var/tmp/tern-fresh}
report="$root.report"
: >"$report"

say() { echo "fresh-check: $*" | tee -a "$report"; }
step() {  # step NAME COMMAND...: runs, times and records one step
  name=$1; shift
  start=$(date +%s)
  if "$@" >>"$root.log" 2>&1; then
    say "PASS $name ($(( $(date +%s) - start )) s)"
  else
    say "FAIL $name ($(( $(date +%s) - start )) s), see $root.log"
    return 1
  fi
}

# The archive this machine's apt uses (deb822 or one-line format).
mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)\/*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
[ -n "$mirror" ] || { echo "fresh-check: no Debian archive found in /etc/apt" >&2; exit 2; }

command -v debootstrap >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }

mounted=""
cleanup() {
  for m in $mounted; do umount -l "$m" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

in_root() { chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }

if [ -e "$root" ]; then
  echo "fresh-check: $root exists; remove it first for a fresh root" >&2
  exit 2
fi
: >"$root.log"
step "debootstrap bookworm minbase" debootstrap --variant=minbase bookworm "$root" "$mirror"

# Same archive settings as this machine's apt; name resolution as here.
rm -f "$root/etc/apt/sources.list"
cp -a /etc/apt/sources.list.d/. "$root/etc/apt/sources.list.d/"
find "$root/etc/apt/sources.list.d" -type f ! -name '*.sources' ! -name '*.list' -delete
for f in "$root"/etc/apt/sources.list.d/*; do
  # only Debian's own archive: other vendors' lists on this machine are not the fresh machine's
  grep -qs 'debian' "$f" || rm -f "$f"
done
cp -a /etc/apt/apt.conf.d/. "$root/etc/apt/apt.conf.d/"
cp /etc/resolv.conf "$root/etc/resolv.conf"

for m in proc sys dev dev/pts; do
  mount --bind "/$m" "$root/$m"
  mounted="$root/$m $mounted"
done
mount -t tmpfs tmpfs "$root/tmp"
mounted="$root/tmp $mounted"

# What a user without root or sudo sees from install-deps (nothing installed yet).
mkdir -p "$root/opt/src"
git -C "$repo" archive HEAD scripts/install-deps.sh | tar -x -C "$root/opt/src"
in_root useradd -m newcomer
if in_root su newcomer -s /bin/sh -c '/opt/src/scripts/install-deps.sh' >"$root/deps-as-user.txt" 2>&1; then
  say "FAIL install-deps as a user without sudo succeeded without installing"
elif grep -q "needs root" "$root/deps-as-user.txt"; then
  say "PASS install-deps as a user without sudo explains: $(grep -m1 'needs root' "$root/deps-as-user.txt")"
else
  say "FAIL install-deps as a user without sudo: $(head -c 300 "$root/deps-as-user.txt")"
fi

# The README's prerequisites, then its two commands, in a clone of this checkout.
step "apt-get install git make (README prerequisites)" in_root sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git make >/dev/null'
mkdir -p "$root/mnt/checkout"
mount --bind "$repo" "$root/mnt/checkout"
mounted="$root/mnt/checkout $mounted"
step "git clone" in_root git clone -q /mnt/checkout /root/tern

# make run: installs, builds, starts ternd in the foreground; a message must go through.
in_root sh -c 'cd /root/tern && exec make run' >"$root/make-run.txt" 2>&1 &
run_pid=$!
answered=""
for _ in $(seq 1 1800); do  # the build comes first: up to 30 minutes
  if in_root bash -c 'exec 3<>/dev/tcp/127.0.0.1/2525' 2>/dev/null; then
    answered=yes
    break
  fi
  kill -0 "$run_pid" 2>/dev/null || break
  sleep 1
done
if [ -n "$answered" ]; then
  say "PASS make run: ternd answers on 127.0.0.1:2525"
  step "swaks through ternd" in_root swaks --server 127.0.0.1 --port 2525 --to someone@example.test
  step "ternctl queue" in_root sh -c 'cd /root/tern && build/tools/ternctl queue'
else
  say "FAIL make run: ternd never answered (tail of its output below)"
  tail -n 20 "$root/make-run.txt" | tee -a "$report"
fi
# Only the ternd whose root is the fresh root: others may run on this machine.
for pid in $(pgrep -x ternd || true); do
  [ "$(readlink "/proc/$pid/root")" = "$root" ] && kill -TERM "$pid"
done
wait "$run_pid" 2>/dev/null || true

if [ "${FRESH_SKIP_TEST:-0}" != 1 ]; then
  step "make test" in_root sh -c 'cd /root/tern && make test' || tail -n 40 "$root.log" | tee -a "$report"
fi
say "report: $report; full output: $root.log"
grep -q '^fresh-check: FAIL' "$report" && exit 1
exit 0
