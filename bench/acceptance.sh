#!/usr/bin/env bash
# Durable acceptance throughput: Tern (ternd) and, when installed, a private
# Postfix instance, measured side by side in one run on this machine with the
# same closed-loop load (bench/smtp_load). See bench/README.md.
#
# A message counts as accepted when the server answered 250 to the end of
# its data; both servers answer that only after the message is on disk
# (Tern: a synced RocksDB WAL write; Postfix: fsync of the queue file).
#
# Environment (all optional):
#   BENCH_MESSAGES=20000      messages per system (upper bound)
#   BENCH_SECONDS=60          time limit per system (upper bound)
#   BENCH_CONNECTIONS=50      concurrent SMTP connections
#   BENCH_SIZE=1024           message size in bytes, headers included
#   BENCH_PER_CONNECTION=100  messages per connection before QUIT + reconnect
#   BENCH_SYSTEMS="tern postfix"   which systems to measure
#   BENCH_POSTFIX_MODE=hold   how Postfix keeps mail queued: hold | defer
#   BENCH_TMPDIR=/var/tmp     where the spools go (must not be tmpfs)
#   BENCH_JSON=FILE           also write a JSON summary to FILE
#   BENCH_KEEP=1              keep the work directory (spools, logs)
#   BENCH_NO_BUILD=1          don't run cmake --build first
#   BUILD=build               the CMake build directory (relative to the repo root)
# Exit status: 0 when every requested system that is available was measured,
# 1 when a system could not be measured (e.g. ternd did not start).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) BUILD_DIR=$BUILD ;; *) BUILD_DIR=$ROOT/$BUILD ;; esac
MESSAGES=${BENCH_MESSAGES:-20000}
SECONDS_LIMIT=${BENCH_SECONDS:-60}
CONNECTIONS=${BENCH_CONNECTIONS:-50}
SIZE=${BENCH_SIZE:-1024}
PER_CONNECTION=${BENCH_PER_CONNECTION:-100}
SYSTEMS=${BENCH_SYSTEMS:-tern postfix}
POSTFIX_MODE=${BENCH_POSTFIX_MODE:-hold}
TMPBASE=${BENCH_TMPDIR:-/var/tmp}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

log() { echo "acceptance: $*" >&2; }
die() { log "$*"; exit 1; }

# ---------------------------------------------------------------------------
# Build what we need.
TERND_BUILD_FAILED=""
if [ -z "${BENCH_NO_BUILD:-}" ]; then
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
  fi
  cmake --build "$BUILD_DIR" -j "$(nproc)" --target smtp_load >&2 || die "smtp_load did not build"
  case " $SYSTEMS " in
  *" tern "*)
    # A failed ternd build fails the Tern measurement, not the whole run.
    cmake --build "$BUILD_DIR" -j "$(nproc)" --target ternd >&2 || {
      TERND_BUILD_FAILED=1
      log "ternd did not build"
    }
    cmake --build "$BUILD_DIR" -j "$(nproc)" --target ternctl >&2 ||
      log "ternctl did not build; fsyncs/msg will be n/a"
    ;;
  esac
fi
LOAD=$BUILD_DIR/bench/smtp_load
TERND=$BUILD_DIR/mta/ternd
TERNCTL=$BUILD_DIR/tools/ternctl
[ -x "$LOAD" ] || die "$LOAD missing (cmake --build $BUILD_DIR --target smtp_load)"

mkdir -p "$TMPBASE"
WORK=$(mktemp -d "$TMPBASE/tern-acceptance.XXXXXX")
chmod 755 "$WORK"
fstype=$(stat -f -c %T "$WORK")
if [ "$fstype" = tmpfs ] || [ "$fstype" = ramfs ]; then
  rm -rf "$WORK"
  die "$TMPBASE is $fstype; durable acceptance must be measured on a disk (set BENCH_TMPDIR)"
fi

TERND_PID=""
LOAD_PID=""
PF_DIR=""
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
  local rc=$?
  if [ -n "$LOAD_PID" ]; then
    kill -TERM "$LOAD_PID" 2>/dev/null || true
    wait "$LOAD_PID" 2>/dev/null || true
  fi
  if [ -n "$TERND_PID" ] && kill -0 "$TERND_PID" 2>/dev/null; then
    kill -TERM "$TERND_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$TERND_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$TERND_PID" 2>/dev/null || true
    wait "$TERND_PID" 2>/dev/null || true
  fi
  if [ -n "$PF_DIR" ]; then
    "$ROOT/bench/postfix_instance.sh" stop "$PF_DIR" || true
  fi
  if [ -n "${BENCH_KEEP:-}" ]; then
    log "work directory kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits until HOST:PORT sends a 220 banner; $2 = pid that must stay alive.
wait_banner() {
  local port=$1 pid=${2:-}
  for _ in $(seq 150); do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    if "$PY" -c "import socket,sys; s=socket.create_connection(('127.0.0.1',$port),1); s.settimeout(1); sys.exit(0 if s.recv(3)==b'220' else 1)" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# Runs the load in the background and waits for it, so that a signal to this
# script is handled at once (the EXIT trap then ends the load too).
run_load() {  # port json
  local rc=0
  "$LOAD" --target "127.0.0.1:$1" --messages "$MESSAGES" --connections "$CONNECTIONS" \
    --size "$SIZE" --per-connection "$PER_CONNECTION" --max-seconds "$SECONDS_LIMIT" \
    --json "$2" --quiet &
  LOAD_PID=$!
  wait "$LOAD_PID" || rc=$?
  LOAD_PID=""
  return "$rc"
}

# "key value" lines of `ternctl stats` -> value of key, or empty.
stat_of() { awk -v k="$1" '$1 == k { print $2; exit }' <<<"$2"; }

# CPU seconds (user + system) used so far by process $1, its reaped children
# and its live children: for ternd that is ternd; for Postfix's master, the
# whole instance (smtpd, cleanup, ... processes come and go).
tree_cpu() {
  "$PY" - "$1" <<'EOF' 2>/dev/null || echo ""
import os, sys
root, hz, total = sys.argv[1], os.sysconf("SC_CLK_TCK"), 0
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    # f[0] is field 3 (state): ppid f[1], utime f[11], stime f[12], cutime f[13], cstime f[14]
    if pid == root or f[1] == root:
        total += sum(int(x) for x in f[11:15])
print(total / hz)
EOF
}

failed=0
echo "{}" >"$WORK/tern.result.json"
echo "{}" >"$WORK/postfix.result.json"

# ---------------------------------------------------------------------------
# Tern
measure_tern() {
  [ -z "$TERND_BUILD_FAILED" ] || { log "tern: ternd did not build (not measuring a stale binary)"; return 1; }
  [ -x "$TERND" ] || { log "tern: $TERND missing"; return 1; }
  local dir=$WORK/tern port cfg sock before after cpu0 cpu1
  mkdir -p "$dir"
  port=$(free_port)
  sock=$dir/ternd.sock
  cfg=$dir/ternd.toml
  cat >"$cfg" <<EOF
[server]
hostname = "tern-bench.localdomain"
drain_timeout = "5s"

[smtp]
listen = ["127.0.0.1:$port"]
max_connections_per_ip = $((CONNECTIONS > 1000 ? CONNECTIONS : 1000))

[relay]
local_domains = ["sink.test"]

[queue]
directory = "$dir/spool"
min_free_space = "1MB"

[control]
socket = "$sock"

[log]
target = "file"
file = "$dir/ternd.log"
EOF
  log "tern: starting ternd on 127.0.0.1:$port (spool $dir/spool, $(stat -f -c %T "$dir"))"
  "$TERND" --config "$cfg" >"$dir/ternd.out" 2>&1 &
  TERND_PID=$!
  if ! wait_banner "$port" "$TERND_PID"; then
    log "tern: ternd did not come up; its output:"
    tail -n 20 "$dir/ternd.out" >&2 || true
    tail -n 20 "$dir/ternd.log" >&2 2>/dev/null || true
    return 1
  fi
  before=""
  after=""
  if [ -x "$TERNCTL" ]; then before=$("$TERNCTL" --socket "$sock" stats 2>/dev/null || true); fi
  cpu0=$(tree_cpu "$TERND_PID")
  cut -d' ' -f1-3 /proc/loadavg >"$WORK/tern.loadavg"
  log "tern: loading ($MESSAGES messages / ${SECONDS_LIMIT}s, $CONNECTIONS connections, $SIZE bytes)"
  run_load "$port" "$dir/load.json" >"$dir/load.txt" || { cat "$dir/load.txt" >&2; return 1; }
  cpu1=$(tree_cpu "$TERND_PID")
  if [ -x "$TERNCTL" ]; then after=$("$TERNCTL" --socket "$sock" stats 2>/dev/null || true); fi
  # An independent count of what the spool holds: the last line of
  # `ternctl queue` is "-- N KiB in M messages".
  local queued=""
  if [ -x "$TERNCTL" ]; then
    queued=$("$TERNCTL" --socket "$sock" queue 2>/dev/null | tail -n 1 |
      sed -n 's/.* in \([0-9][0-9]*\) message.*/\1/p' || true)
  fi
  local alive=true
  kill -0 "$TERND_PID" 2>/dev/null || alive=false
  # Graceful stop; the exit status is recorded.
  local stop_rc=0
  if $alive; then
    kill -TERM "$TERND_PID"
    for _ in $(seq 100); do kill -0 "$TERND_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$TERND_PID" 2>/dev/null; then
      log "tern: ternd did not stop within 10 s of SIGTERM; killing it"
      kill -KILL "$TERND_PID" 2>/dev/null || true
    fi
  fi
  wait "$TERND_PID" 2>/dev/null || stop_rc=$?
  TERND_PID=""
  $alive || log "tern: ternd died during the run (exit $stop_rc); see $dir/ternd.out"
  "$PY" - "$dir/load.json" "$WORK/tern.result.json" "$alive" "$stop_rc" "$cpu0" "$cpu1" \
    "$(stat_of commits "$before")" "$(stat_of commits "$after")" \
    "$(stat_of batches "$before")" "$(stat_of batches "$after")" \
    "$(stat_of wal_syncs "$before")" "$(stat_of wal_syncs "$after")" "$queued" <<'EOF'
import json, sys
load = json.load(open(sys.argv[1]))
alive, stop_rc, cpu0, cpu1 = sys.argv[3] == "true", int(sys.argv[4]), sys.argv[5], sys.argv[6]
def delta(a, b):
    try: return int(b) - int(a)
    except ValueError: return None
commits, batches, syncs = (delta(sys.argv[7], sys.argv[8]), delta(sys.argv[9], sys.argv[10]),
                           delta(sys.argv[11], sys.argv[12]))
acc = load["accepted"]
res = {"system": "tern", "load": load, "server_alive_after_run": alive, "exit_status": stop_rc,
       "commits": commits, "batches": batches, "wal_syncs": syncs,
       "fsyncs_per_message": (syncs / acc) if (syncs is not None and acc) else None,
       "server_cpu_seconds": (float(cpu1) - float(cpu0)) if cpu0 and cpu1 else None,
       "queued_after_run": int(sys.argv[13]) if sys.argv[13] else None}
json.dump(res, open(sys.argv[2], "w"), indent=2)
q = res["queued_after_run"]
if q is not None and not (acc <= q <= load["attempted"]):
    print(f"acceptance: tern: WARNING: {q} messages queued but {acc} accepted", file=sys.stderr)
EOF
  $alive
}

# ---------------------------------------------------------------------------
# Postfix
measure_postfix() {
  local port count
  PF_DIR=$WORK/postfix
  port=$(free_port)
  log "postfix: starting a private instance on 127.0.0.1:$port (mode $POSTFIX_MODE, queue $PF_DIR/spool)"
  "$ROOT/bench/postfix_instance.sh" start "$PF_DIR" "$port" "$POSTFIX_MODE" >&2 || return 1
  local master cpu0="" cpu1=""
  master=$(tr -dc '0-9' <"$PF_DIR/spool/pid/master.pid" 2>/dev/null || true)
  [ -z "$master" ] || cpu0=$(tree_cpu "$master")
  cut -d' ' -f1-3 /proc/loadavg >"$WORK/postfix.loadavg"
  log "postfix: loading ($MESSAGES messages / ${SECONDS_LIMIT}s, $CONNECTIONS connections, $SIZE bytes)"
  run_load "$port" "$PF_DIR/load.json" >"$PF_DIR/load.txt" || { cat "$PF_DIR/load.txt" >&2; return 1; }
  [ -z "$master" ] || cpu1=$(tree_cpu "$master")
  count=$("$ROOT/bench/postfix_instance.sh" count "$PF_DIR" || echo "")
  "$ROOT/bench/postfix_instance.sh" stop "$PF_DIR" || true
  "$PY" - "$PF_DIR/load.json" "$WORK/postfix.result.json" "$count" "$POSTFIX_MODE" \
    "$(postconf -d -h mail_version 2>/dev/null || echo unknown)" "$cpu0" "$cpu1" <<'EOF'
import json, sys
load = json.load(open(sys.argv[1]))
try: queued = int(sys.argv[3])
except ValueError: queued = None
cpu0, cpu1 = sys.argv[6], sys.argv[7]
res = {"system": "postfix", "version": sys.argv[5], "mode": sys.argv[4], "load": load,
       "queued_after_run": queued,
       "server_cpu_seconds": (float(cpu1) - float(cpu0)) if cpu0 and cpu1 else None}
json.dump(res, open(sys.argv[2], "w"), indent=2)
if queued is not None and not (load["accepted"] <= queued <= load["attempted"]):
    print(f"acceptance: postfix: WARNING: {queued} messages queued but {load['accepted']} accepted",
          file=sys.stderr)
EOF
}

for sys in $SYSTEMS; do
  case "$sys" in
  tern)
    measure_tern || { failed=1; log "tern: not measured"; }
    ;;
  postfix)
    if [ -x /usr/sbin/postfix ]; then
      measure_postfix || { failed=1; log "postfix: not measured"; }
    else
      log "postfix: /usr/sbin/postfix not installed; skipped (see bench/README.md)"
    fi
    ;;
  *) die "unknown system $sys (BENCH_SYSTEMS takes tern and/or postfix)" ;;
  esac
done

# ---------------------------------------------------------------------------
# Table and summary.
"$PY" - "$WORK/tern.result.json" "$WORK/postfix.result.json" "${BENCH_JSON:-}" \
  "$MESSAGES" "$SECONDS_LIMIT" "$CONNECTIONS" "$SIZE" "$PER_CONNECTION" <<'EOF'
import json, os, platform, sys, time
tern = json.load(open(sys.argv[1]))
pf = json.load(open(sys.argv[2]))
for name, r in (("tern", tern), ("postfix", pf)):
    if not r.get("load"):
        continue
    try:
        r["loadavg_before"] = open(os.path.join(os.path.dirname(sys.argv[1]), name + ".loadavg")).read().split()
    except OSError:
        pass
out_path = sys.argv[3]
params = dict(messages=int(sys.argv[4]), max_seconds=float(sys.argv[5]), connections=int(sys.argv[6]),
              size=int(sys.argv[7]), per_connection=int(sys.argv[8]))

def row(name, r, extra):
    l = r["load"]
    return [name, str(l["accepted"]), f'{l["seconds"]:.2f}', f'{l["messages_per_second"]:.0f}',
            f'{l["latency_ms"]["p50"]:.2f}', f'{l["latency_ms"]["p99"]:.2f}',
            str(l["temp_failed"] + l["perm_failed"] + l["connection_errors"]), extra]

rows = [["system", "accepted", "seconds", "msg/s", "p50 ms", "p99 ms", "failed", "fsyncs/msg"]]
if tern.get("load"):
    f = tern.get("fsyncs_per_message")
    rows.append(row("tern", tern, "n/a" if f is None else f"{f:.3f}"))
if pf.get("load"):
    rows.append(row(f'postfix {pf.get("version", "")} ({pf["mode"]})', pf, "1 (design)"))
widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
print()
print(f'Durable acceptance: {params["size"]}-byte messages, {params["connections"]} connections, '
      f'at most {params["messages"]} messages / {params["max_seconds"]:g} s per system, '
      f'{os.cpu_count()} CPUs')
for r in rows:
    print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
ratio = None
if tern.get("load") and pf.get("load") and pf["load"]["messages_per_second"] > 0:
    ratio = tern["load"]["messages_per_second"] / pf["load"]["messages_per_second"]
    print(f"Tern/Postfix throughput ratio: {ratio:.2f}")
for name, r in (("tern", tern), ("postfix", pf)):
    l = r.get("load")
    if not l:
        continue
    notes = []
    if l["stopped_by_time"]:
        notes.append("stopped by the time limit")
    if l["temp_failed"] or l["perm_failed"]:
        notes.append(f'replies {l["reply_codes"]}')
    if l["errors"]:
        notes.append(f'errors {l["errors"]}')
    if r.get("server_cpu_seconds") is not None and l["accepted"]:
        notes.append(f'server CPU {r["server_cpu_seconds"]:.2f} s = '
                     f'{r["server_cpu_seconds"] * 1e6 / l["accepted"]:.0f} us/msg')
    if name == "tern" and not r.get("server_alive_after_run", True):
        notes.append("ternd DIED during the run")
    elif name == "tern" and r.get("exit_status"):
        notes.append(f'ternd exited with status {r["exit_status"]} after SIGTERM')
    if name == "tern" and r.get("commits") is not None:
        notes.append(f'commits {r["commits"]}, batches {r["batches"]}, wal_syncs {r["wal_syncs"]}')
    if r.get("queued_after_run") is not None:
        notes.append(f'{r["queued_after_run"]} in queue afterwards')
    notes.append(f'load generator CPU {l["client_cpu_seconds"]["user"] + l["client_cpu_seconds"]["system"]:.2f} s')
    if r.get("loadavg_before"):
        notes.append(f'load average before {" ".join(r["loadavg_before"])}')
    print(f"  {name}: " + "; ".join(notes))
if out_path:
    summary = {"benchmark": "durable_acceptance", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "host": platform.node(), "cpus": os.cpu_count(), "kernel": platform.release(),
               "parameters": params, "tern": tern or None, "postfix": pf or None,
               "tern_postfix_ratio": ratio}
    with open(out_path, "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    print(f"JSON summary: {out_path}")
EOF
exit $failed
