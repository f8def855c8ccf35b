#!/bin/sh
# A private, throw-away Postfix instance for the benchmarks.
#
#   postfix_instance.sh start DIR PORT [hold|defer|relay SINK_PORT|relay-tuned SINK_PORT]
#                                                      create DIR/etc, DIR/spool, DIR/data and start it
#   postfix_instance.sh count DIR                      messages in its queue (postqueue -p)
#   postfix_instance.sh stop  DIR                      stop it (waits for the master to exit)
#
# The instance has its own config_directory, queue_directory and
# data_directory under DIR; smtpd listens only on 127.0.0.1:PORT. It never
# touches the system instance (/etc/postfix, port 25). Must run as root
# (Postfix's master drops to the "postfix" user).
#
# What it does with accepted mail:
#   relay the job of a relay: every message goes on to 127.0.0.1:SINK_PORT
#         (relayhost, no DNS), with Postfix's default delivery concurrency.
#   relay-tuned  the same, tuned as an administrator tunes a relay that
#         sends everything to one smarthost: up to 200 processes per service
#         (smtpd, the relay client) instead of 100, and up to 50 parallel
#         deliveries to the one destination instead of 20. See
#         docs/benchmarking.md for why each setting, and what was left alone.
# or, so that only acceptance is measured, it keeps it queued:
#   hold  (default) every message is put on hold by the SMTP server
#         (check_recipient_access static:HOLD): cleanup writes and fsyncs the
#         queue file exactly as usual, then files it in the hold queue, where
#         the queue manager never looks at it.
#   defer messages go to the incoming queue as usual; the queue manager
#         moves them to the deferred queue without trying to deliver
#         (defer_transports), which costs it extra work per message.
# Both keep Postfix's normal durability: cleanup fsync()s every queue file
# before smtpd answers 250.
set -eu

die() { echo "postfix_instance: $*" >&2; exit 1; }

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 start DIR PORT [hold|defer|relay SINK_PORT|relay-tuned SINK_PORT] | count DIR | stop DIR"
[ -x /usr/sbin/postfix ] || die "/usr/sbin/postfix not found (apt-get install postfix, see bench/README.md)"
[ "$(id -u)" -eq 0 ] || die "must run as root"
case "$dir" in /*) ;; *) dir=$(pwd)/$dir ;; esac
etc=$dir/etc

master_pid() {
  pidfile=$dir/spool/pid/master.pid
  [ -r "$pidfile" ] || return 1
  pid=$(tr -dc '0-9' <"$pidfile")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

case "$cmd" in
start)
  port=${3:-}
  mode=${4:-hold}
  [ -n "$port" ] || die "start needs a port"
  case "$mode" in
  hold|defer) ;;
  relay|relay-tuned) [ -n "${5:-}" ] || die "$mode needs the sink's port" ;;
  *) die "mode must be hold, defer, relay or relay-tuned" ;;
  esac
  daemon_dir=$(postconf -h daemon_directory 2>/dev/null || echo /usr/lib/postfix/sbin)
  mkdir -p "$etc" "$dir/spool" "$dir/data" "$dir/log"
  # The queue and data directories' parents must be root-owned and not
  # writable by others (postfix check); mktemp dirs are 0700 root.
  chmod 755 "$dir"
  chown postfix "$dir/data"
  : >"$dir/log/maillog"
  keep=""
  defer=""
  relayhost=""
  tuning="# Everything else (fsync of queue files, process limits) stays at the defaults."
  case "$mode" in
  hold) keep="check_recipient_access static:HOLD" ;;
  defer) defer="smtp, relay" ;;
  relay) relayhost="[127.0.0.1]:$5" ;;
  relay-tuned)
    relayhost="[127.0.0.1]:$5"
    # sink.test is a relay_domains domain, so its mail takes the "relay"
    # transport, whose relay_destination_concurrency_limit (like smtp's)
    # follows the default_ one. Queue files are still fsynced as by default.
    tuning="# Tuned for a relay to one smarthost (bench/postfix_instance.sh relay-tuned).
default_process_limit = 200
default_destination_concurrency_limit = 50"
    ;;
  esac
  cat >"$etc/main.cf" <<EOF
# Private benchmark instance (bench/postfix_instance.sh); generated, do not edit.
compatibility_level = 3.6
config_directory = $etc
queue_directory = $dir/spool
data_directory = $dir/data
daemon_directory = $daemon_dir
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix-bench.localdomain
mydomain = localdomain
myorigin = \$myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
local_recipient_maps =
relay_domains = sink.test
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = $keep
defer_transports = $defer
relayhost = $relayhost
# Offline machine: no DNS for the client's name or for relay targets.
smtpd_peername_lookup = no
disable_dns_lookups = yes
smtp_dns_support_level = disabled
biff = no
alias_maps =
alias_database =
maillog_file = $dir/log/maillog
$tuning
EOF
  cat >"$etc/master.cf" <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:$port inet n  -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
  # Creates the queue subdirectories with the right owners, then starts.
  postfix -c "$etc" set-permissions >/dev/null 2>&1 || true
  postfix -c "$etc" check || die "postfix check failed (see $dir/log/maillog)"
  postfix -c "$etc" start || die "postfix start failed (see $dir/log/maillog)"
  # Wait until smtpd answers on the port.
  i=0
  while [ $i -lt 100 ]; do
    if python3 -c "import socket,sys; s=socket.create_connection(('127.0.0.1',$port),1); sys.exit(0 if s.recv(3)==b'220' else 1)" 2>/dev/null; then
      exit 0
    fi
    i=$((i + 1))
    sleep 0.1
  done
  die "smtpd did not answer on 127.0.0.1:$port (see $dir/log/maillog)"
  ;;
count)
  # Let the queue manager finish moving files (defer mode), or showq may
  # count a message twice while it moves from active to deferred. At most 30 s.
  i=0
  while [ $i -lt 300 ]; do
    n=$(find "$dir/spool/incoming" "$dir/spool/active" -type f 2>/dev/null | wc -l)
    [ "$n" -eq 0 ] && break
    i=$((i + 1))
    sleep 0.1
  done
  # The last line of postqueue -p: "-- 123 Kbytes in 20000 Requests." (or
  # "Mail queue is empty").
  out=$(postqueue -c "$etc" -p 2>/dev/null | tail -n 1) || true
  case "$out" in
  *" in "*" Request"*) echo "$out" | sed -n 's/.* in \([0-9][0-9]*\) Request.*/\1/p' ;;
  *"is empty"*) echo 0 ;;
  *)
    # showq unavailable: count the queue files instead.
    find "$dir/spool/incoming" "$dir/spool/active" "$dir/spool/deferred" "$dir/spool/hold" \
      "$dir/spool/maildrop" -type f 2>/dev/null | wc -l
    ;;
  esac
  ;;
stop)
  [ -d "$etc" ] || exit 0
  pid=$(master_pid || true)
  [ -n "$pid" ] || exit 0
  postfix -c "$etc" stop >/dev/null 2>&1 || true
  i=0
  while [ $i -lt 100 ] && kill -0 "$pid" 2>/dev/null; do
    i=$((i + 1))
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    # The master we started ignored the stop: end it (and with it its children).
    kill -TERM "$pid" 2>/dev/null || true
    sleep 1
    kill -KILL "$pid" 2>/dev/null || true
  fi
  ;;
*)
  die "unknown command $cmd"
  ;;
esac
