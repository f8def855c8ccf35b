#!/usr/bin/python3
"""Backlog benchmark: how ternd drains a large queue.

For each backlog size N it starts a fresh ternd relaying to a tern-sink and:
  1. holds the destination (ternctl hold-domain sink.test) and queues N
     messages with tern-bench: the accept rate while queueing;
  2. releases it (ternctl release-domain) and waits until the sink has every
     accepted message: drain time and rate;
  3. meanwhile sends fresh mail at a low fixed rate (tern-bench --rate) to
     another domain that ternd routes to a second sink: the end-to-end p99 of
     mail that arrives during a drain;
and samples all along ternd's RSS and the spool's size on disk, and reads
ternd's CPU per thread kind (threads grouped by name, trailing number
dropped) for the queueing and the drain. At the end, the finished log's
size on disk (ternctl stats finished_log_bytes) per message delivered is
what each finished message leaves in the spool (its summary, with
--finished-retention; nothing without).

Loopback only; every phase is bounded in messages and seconds (a backlog
that does not fill or drain in time is reported as partial). The work
directory (under --tmpdir, a real disk) is removed at the end unless --keep.
See docs/benchmarking.md for how to read the numbers.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

from benchlib import (Failure, cpu_per_message, Sink, Tern, Tools, add_common_options, build_tools, disk_usage, finish_workdir, fmt,
                      log, machine, make_workdir, parse_size, print_aligned, rss_kib, stop_process, thread_cpu_by_kind,
                      write_json)

BACKLOG_DOMAIN = "sink.test"
# Fresh mail goes to its own domain and sink: the sink's end-to-end histogram
# cannot tell a fresh message from a released one, a second sink can.
FRESH_DOMAIN = "fresh.test"
MIB = 1024 * 1024


def start_bench(tools, port, messages, connections, size, to, seconds, report, rate=0):
    """Starts a tern-bench bounded by `messages` and `seconds`."""
    cmd = [tools.bench, "--target", f"127.0.0.1:{port}", "--messages", str(messages), "--connections",
           str(connections), "--size", str(size), "--to", to, "--duration", str(seconds), "--json", report, "--quiet"]
    if rate:
        cmd += ["--rate", str(rate)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish_bench(proc, report, timeout):
    """Waits for a tern-bench (it ends by itself, or SIGINT made it finish
    what is in flight) and returns its JSON report."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise Failure("tern-bench did not finish")
    if proc.returncode != 0:
        raise Failure(f"tern-bench failed: {err.strip()}")
    with open(report) as f:
        return json.load(f)


def start_perf(prefix, pid, count):
    """perf record of ternd during the drain, to PREFIX-COUNT.data (--perf)."""
    if not prefix:
        return None
    return subprocess.Popen(["perf", "record", "-g", "-q", "-p", str(pid), "-o", f"{prefix}-{count}.data"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_perf(proc):
    if proc is None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Recorder:
    """Samples ternd's RSS and the spool's size on disk over time."""

    def __init__(self, tern):
        self.tern = tern
        self.start = time.monotonic()
        self.samples = []

    def sample(self, phase, delivered=None):
        s = {"t": round(time.monotonic() - self.start, 2), "phase": phase, "rss_kib": rss_kib(self.tern.proc.pid),
             "spool_bytes": disk_usage(self.tern.spool)}
        if delivered is not None:
            s["delivered"] = delivered
        self.samples.append(s)
        return s

    def max_rss_kib(self):
        return max((s["rss_kib"] for s in self.samples if s["rss_kib"] is not None), default=None)


def measure(args, tools, workdir, count):
    """One backlog of `count` messages; returns its row."""
    name = f"backlog-{count}"
    row = {"count": count, "size": args.size, "connections": args.connections, "fresh_rate": args.fresh_rate,
           "delivery_loops": args.delivery_loops}
    with open("/proc/loadavg") as f:
        row["loadavg_before"] = f.read().split()[:3]
    sink = Sink(tools, workdir, name)
    fresh_sink = tern = trickle = release = None
    try:
        fresh_sink = Sink(tools, workdir, f"{name}-fresh")
        tern = Tern(tools, workdir, name, args.connections, sink.port, relay_domains=(BACKLOG_DOMAIN, FRESH_DOMAIN),
                    finished_retention=args.finished_retention, delivery_loops=args.delivery_loops,
                    extra_config=f"""
[[routing.transport]]
domain = "{FRESH_DOMAIN}"
next_hop = "[127.0.0.1]:{fresh_sink.port}"
""")
        pid = tern.proc.pid
        tern.ctl("hold-domain", BACKLOG_DOMAIN)
        rec = Recorder(tern)
        rec.sample("start")

        # 1. Queue the backlog while its destination is held.
        cpu_start = thread_cpu_by_kind(pid)
        fill_report = os.path.join(workdir, f"{name}.fill.json")
        fill = start_bench(tools, tern.port, count, args.connections, args.size, f"user{{n}}@{BACKLOG_DOMAIN}",
                           args.fill_seconds, fill_report)
        while fill.poll() is None:
            rec.sample("fill")
            time.sleep(args.interval)
        rep = finish_bench(fill, fill_report, 60)
        cpu_full = thread_cpu_by_kind(pid)
        accepted = rep["accepted"]
        row.update(accepted=accepted, fill_s=rep["elapsed_s"],
                   accepted_per_s=accepted / rep["elapsed_s"] if rep["elapsed_s"] else None,
                   fill_failed=rep["temp_failed"] + rep["perm_failed"] + rep["connection_errors"],
                   fill_p99_ms=rep["latency_ms"]["message"]["p99"],
                   fill_cpu_us=cpu_per_message(cpu_start, cpu_full, accepted), stats_full=tern.stats())
        full = rec.sample("full")
        # Nothing may have reached the sink yet, or the destination was not held.
        row.update(rss_full_kib=full["rss_kib"], spool_full_bytes=full["spool_bytes"],
                   delivered_before_release=sink.snapshot()["messages"])
        if row["delivered_before_release"]:
            log(f"  {row['delivered_before_release']} delivered before the release: the hold did not hold")
        log(f"  {accepted} queued in {rep['elapsed_s']:.1f} s; releasing")

        # 2. Fresh mail at a fixed rate, then release the backlog and wait for it.
        fresh_report = os.path.join(workdir, f"{name}.fresh.json")
        trickle = start_bench(tools, tern.port, args.fresh_rate * args.drain_seconds, args.fresh_connections, args.size,
                              f"fresh{{n}}@{FRESH_DOMAIN}", args.drain_seconds, fresh_report, rate=args.fresh_rate)
        perf = start_perf(args.perf, pid, count)
        released_at = time.monotonic()
        # release-domain returns only once every held message has been moved,
        # while deliveries already run: it is timed apart, and the drain is
        # sampled meanwhile.
        release = tern.ctl_start("release-domain", BACKLOG_DOMAIN)
        row["release_cmd_s"] = None
        release_running = True
        while time.monotonic() - released_at < args.drain_seconds:
            if release_running and release.poll() is not None:
                release_running = False
                if release.returncode == 0:
                    row["release_cmd_s"] = time.monotonic() - released_at
                else:
                    # ternctl gave up waiting; the engine may still be releasing: the drain tells.
                    row["release_error"] = release.stderr.read().strip()
                    log(f"  ternctl release-domain: {row['release_error']}")
            delivered = sink.snapshot()["messages"]
            rec.sample("drain", delivered)
            if delivered >= accepted:
                break
            time.sleep(args.interval)
        drain_s = time.monotonic() - released_at
        cpu_drained = thread_cpu_by_kind(pid)
        stop_perf(perf)
        report = sink.snapshot()
        row.update(delivered=report["messages"], drained=report["messages"] >= accepted, drain_s=drain_s,
                   drain_per_s=report["messages"] / drain_s, sink_window_per_s=report["messages_per_s"],
                   drain_cpu_us=cpu_per_message(cpu_full, cpu_drained, report["messages"]),
                   rss_drained_kib=rec.samples[-1]["rss_kib"], spool_drained_bytes=rec.samples[-1]["spool_bytes"])
        if report["messages"] < accepted:
            log(f"  drain bounded: {report['messages']} of {accepted} delivered in {args.drain_seconds} s")

        # 3. Stop the fresh mail; what ternd accepted of it must reach its sink.
        trickle.send_signal(signal.SIGINT)
        fresh = finish_bench(trickle, fresh_report, 60)
        trickle = None
        fresh_rep, _ = fresh_sink.wait_for(fresh["accepted"], 30)
        e2e = fresh_rep.get("e2e_latency_ms") or {}
        row.update(fresh_accepted=fresh["accepted"], fresh_delivered=fresh_rep["messages"],
                   fresh_accept_p99_ms=fresh["latency_ms"]["message"]["p99"], fresh_e2e_p50_ms=e2e.get("p50"),
                   fresh_e2e_p99_ms=e2e.get("p99"), fresh_e2e_max_ms=e2e.get("max"))

        # 4. Let the reclaimer give the space back (it runs once writes pause).
        settle_end = time.monotonic() + args.settle_seconds
        while time.monotonic() < settle_end:
            time.sleep(args.interval)
            rec.sample("settle")
        finished = row["delivered"] + row["fresh_delivered"]
        finished_log_bytes = int(tern.stats().get("finished_log_bytes", 0))
        row.update(rss_end_kib=rec.samples[-1]["rss_kib"], spool_end_bytes=rec.samples[-1]["spool_bytes"],
                   finished_log_bytes=finished_log_bytes,
                   finished_log_bytes_per_message=finished_log_bytes / finished if finished else None,
                   rss_max_kib=rec.max_rss_kib(), samples=rec.samples)
        return row
    finally:
        stop_process(trickle)
        stop_process(release)
        if tern:
            tern.stop()
        if fresh_sink:
            fresh_sink.stop()
        sink.stop()


def kib_to_mib(kib):
    return None if kib is None else kib / 1024


def print_tables(rows):
    head = ["backlog", "accepted", "acc msg/s", "release s", "delivered", "drain s", "drain msg/s", "RSS MiB full",
            "max", "end", "spool MiB full", "drained", "end", "finished B/msg", "fresh 250 p99 ms", "fresh e2e p99 ms", "max", "us/msg fill",
            "drain"]
    table = [head]
    for r in rows:
        if "error" in r:
            continue  # listed below the table
        table.append([str(r["count"]), str(r["accepted"]), fmt(r["accepted_per_s"]), fmt(r["release_cmd_s"], "{:.1f}"),
                      str(r["delivered"]) + ("" if r["drained"] else " (bounded)"), fmt(r["drain_s"], "{:.1f}"),
                      fmt(r["drain_per_s"]), fmt(kib_to_mib(r["rss_full_kib"])),
                      fmt(kib_to_mib(r["rss_max_kib"])), fmt(kib_to_mib(r["rss_end_kib"])), fmt(r["spool_full_bytes"] / MIB), fmt(r["spool_drained_bytes"] / MIB),
                      fmt(r["spool_end_bytes"] / MIB), fmt(r["finished_log_bytes_per_message"], "{:.1f}"),
                      fmt(r["fresh_accept_p99_ms"], "{:.1f}"), fmt(r["fresh_e2e_p99_ms"], "{:.1f}"),
                      fmt(r["fresh_e2e_max_ms"], "{:.1f}"), fmt(r["fill_cpu_us"].get("all")),
                      fmt(r["drain_cpu_us"].get("all"))])
    print_aligned(table, 1)
    for r in rows:
        if "error" in r:
            print(f"{r['count']}: not measured: {r['error']}")
        elif "release_error" in r:
            print(f"{r['count']}: ternctl release-domain failed ({r['release_error']}); the drain went on")
    kinds = sorted({k for r in rows if "error" not in r for phase in ("fill_cpu_us", "drain_cpu_us")
                    for k in r[phase] if k != "all"})
    if not kinds:
        return
    print()
    print("ternd CPU in microseconds per message, by thread kind (fill: per accepted, drain: per delivered):")
    table = [["backlog", "phase", *kinds, "all"]]
    for r in rows:
        if "error" in r:
            continue
        for phase in ("fill", "drain"):
            cpu = r[f"{phase}_cpu_us"]
            table.append([str(r["count"]), phase, *(fmt(cpu.get(k), "{:.1f}") for k in kinds),
                          fmt(cpu.get("all"), "{:.1f}")])
    print_aligned(table, 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="20000,100000", help="backlog sizes, comma-separated (20000,100000)")
    ap.add_argument("--size", default="1k", help="message size (1k)")
    ap.add_argument("--connections", type=int, default=50, help="tern-bench connections while queueing (50)")
    ap.add_argument("--fresh-rate", type=int, default=20, help="fresh messages per second during the drain (20)")
    ap.add_argument("--fresh-connections", type=int, default=10,
                    help="connections the fresh mail is sent over (10): enough that a slow 250 during the drain "
                         "shows as its own latency, not as messages queued behind it in tern-bench")
    ap.add_argument("--delivery-loops", type=int, default=0,
                    help="ternd's delivery.loops (0: as many as its workers, one per CPU)")
    ap.add_argument("--fill-seconds", type=int, default=300, help="time limit for queueing one backlog (300)")
    ap.add_argument("--drain-seconds", type=int, default=600, help="time limit for draining one backlog (600)")
    ap.add_argument("--settle-seconds", type=int, default=10,
                    help="how long to keep sampling after the drain, while space is reclaimed (10)")
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between samples (0.5)")
    ap.add_argument("--finished-retention",
                    help='queue.finished_retention for ternd, e.g. "7d" (default: ternd\'s, no finished log)')
    ap.add_argument("--perf", metavar="PREFIX",
                    help="perf record ternd during each drain into PREFIX-N.data (perf report --no-children -i ...)")
    add_common_options(ap)
    args = ap.parse_args()
    args.size = parse_size(args.size)
    if args.fresh_rate < 1:
        sys.exit("backlog: --fresh-rate must be at least 1")
    if args.fresh_connections < 1:
        sys.exit("backlog: --fresh-connections must be at least 1")

    if not args.no_build:
        build_tools(args.build)
    tools = Tools(args.build)
    workdir = make_workdir(args.tmpdir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rows = []
    try:
        for count in [int(c) for c in args.counts.split(",") if c]:
            log(f"backlog of {count} x {args.size} bytes")
            try:
                rows.append(measure(args, tools, workdir, count))
            except (Failure, subprocess.TimeoutExpired, OSError) as e:
                log(f"  not measured: {e}")
                rows.append({"count": count, "error": str(e)})
    finally:
        finish_workdir(workdir, args.keep)

    print()
    print(f"Backlog benchmark on {machine()}; {args.size} bytes, {args.connections} connections "
          f"queueing, fresh mail at {args.fresh_rate}/s over {args.fresh_connections} connections during the drain, delivery.loops = {args.delivery_loops}")
    print_tables(rows)
    if args.json:
        write_json(args.json, rows)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
