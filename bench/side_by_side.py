#!/usr/bin/python3
"""Side-by-side SMTP benchmark: one run, one machine, one table.

For every message size and connection count asked for, it measures:
  raw      tern-bench -> tern-sink: the physical limit of this machine
           (no MTA in between);
  tern     tern-bench -> ternd (durable queue) -> tern-sink: acceptance
           rate, and end-to-end delivery rate and p99 end-to-end latency as
           the sink sees them;
  postfix  tern-bench -> a private Postfix instance relaying to the same
           tern-sink, with Postfix's defaults: acceptance and end-to-end
           delivery;
  postfix-tuned  the same, tuned as an administrator would tune a relay to
           one smarthost (default_process_limit = 200,
           default_destination_concurrency_limit = 50);
  postfix-hold  the same instance putting mail on hold: acceptance only;
and, with Postfix's smtp-source, the same targets again as a cross-check of
tern-bench's own figures.

Every system gets a fresh spool / instance / sink, started on free loopback
ports and stopped afterwards; every run is bounded in messages and seconds.
Nothing is installed unless --with-postfix is given (and Postfix is
missing); the work directory (spools, configs, logs) is removed at the end
unless --keep. See docs/benchmarking.md for how to read the numbers.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

from benchlib import (ROOT, Failure, Sink, Tern, Tools, add_common_options, build_tools, cpu_per_message, finish_workdir,
                      fmt, log, machine, make_workdir, parse_size, print_aligned, process_tree_cpu, thread_cpu_by_kind,
                      write_json)
from loopback import free_port

POSTFIX_INSTANCE = os.path.join(ROOT, "bench", "postfix_instance.sh")
SMTP_SOURCE = "/usr/sbin/smtp-source"
# Each Postfix row and the postfix_instance.sh mode it runs.
POSTFIX_MODES = {"postfix": "relay", "postfix-tuned": "relay-tuned", "postfix-hold": "hold"}
SYSTEMS = ["raw", "tern", *POSTFIX_MODES]


class Postfix:
    def __init__(self, workdir, name, mode, sink_port):
        self.dir = os.path.join(workdir, name)
        self.port = free_port()
        self.delivers = mode.startswith("relay")
        args = [POSTFIX_INSTANCE, "start", self.dir, str(self.port), mode]
        if self.delivers:
            args.append(str(sink_port))
        r = subprocess.run(args, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            self.stop()
            raise Failure(f"Postfix did not start: {r.stderr.strip()}")
        with open(os.path.join(self.dir, "spool", "pid", "master.pid")) as f:
            self.master = int(f.read().strip())

    def cpu(self):
        return process_tree_cpu(self.master)

    def stop(self):
        subprocess.run([POSTFIX_INSTANCE, "stop", self.dir], capture_output=True, timeout=60)


def run_generator(args, tools, generator, port, size, connections, workdir, name):
    """Runs the load; returns a dict with sent/accepted/seconds/latency and
    the generator's CPU time, or raises Failure."""
    messages = args.messages_small if size <= 10 * 1024 else args.messages_large
    if generator == "tern-bench":
        report = os.path.join(workdir, f"{name}.bench.json")
        cmd = [tools.bench, "--target", f"127.0.0.1:{port}", "--messages", str(messages),
               "--connections", str(connections), "--size", str(size), "--to", "user{n}@sink.test",
               "--json", report, "--quiet"]
        t0 = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + 60)
        wall = time.monotonic() - t0
        if r.returncode != 0:
            raise Failure(f"tern-bench failed: {r.stderr.strip()}")
        with open(report) as f:
            rep = json.load(f)
        return {"sent": rep["sent"], "accepted": rep["accepted"], "seconds": rep["elapsed_s"], "wall": wall,
                "failed": rep["temp_failed"] + rep["perm_failed"] + rep["connection_errors"],
                "p99_ms": rep["latency_ms"]["message"]["p99"],
                "generator_cpu_pct": rep["cpu"]["percent_of_one_core"]}
    # smtp-source: -s sessions, -m messages, -l payload length (headers
    # excluded, so subtract what tern-bench counts as headers), -c counts.
    cmd = [SMTP_SOURCE, "-s", str(connections), "-m", str(messages), "-l", str(max(1, size - 300)),
           "-f", "bench@bench.test", "-t", "user@sink.test", "-M", "bench.test", f"127.0.0.1:{port}"]
    t0 = time.monotonic()
    usage0 = os.times()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + 60)
    wall = time.monotonic() - t0
    usage1 = os.times()
    if r.returncode != 0:
        raise Failure(f"smtp-source failed: {r.stderr.strip()}")
    cpu = (usage1.children_user - usage0.children_user) + (usage1.children_system - usage0.children_system)
    # smtp-source reports no counts of its own: the caller counts at the server.
    return {"sent": messages, "accepted": None, "seconds": wall, "wall": wall, "failed": None, "p99_ms": None,
            "generator_cpu_pct": 100.0 * cpu / wall if wall > 0 else None}


def measure(args, tools, system, generator, size, connections, workdir):
    name = f"{system}-{generator}-{size}-{connections}"
    row = {"system": system, "generator": generator, "size": size, "connections": connections}
    with open("/proc/loadavg") as f:
        row["loadavg_before"] = f.read().split()[:3]
    sink = Sink(tools, workdir, name)
    server = None
    try:
        if system == "raw":
            port = sink.port
        elif system == "tern":
            server = Tern(tools, workdir, name, connections, sink.port)
            port = server.port
        else:
            server = Postfix(workdir, name, POSTFIX_MODES[system], sink.port)
            port = server.port
        stats0 = server.stats() if isinstance(server, Tern) else None
        cpu0 = server.cpu() if server else None
        threads0 = thread_cpu_by_kind(server.proc.pid) if isinstance(server, Tern) else None
        start = time.monotonic()
        load = run_generator(args, tools, generator, port, size, connections, workdir, name)
        cpu1 = server.cpu() if server else None
        row.update(load)
        if system == "raw":
            rep = sink.snapshot()
            if load["accepted"] is None:
                load["accepted"] = row["accepted"] = rep["messages"]
            row["delivered"] = rep["messages"]
            row["e2e_per_s"] = rep["messages"] / row["seconds"] if row["seconds"] else None
            row["e2e_p99_ms"] = rep.get("e2e_latency_ms", {}).get("p99")
        else:
            if isinstance(server, Tern):
                stats1 = server.stats()
                try:
                    syncs = int(stats1["wal_syncs"]) - int(stats0["wal_syncs"])
                    row["fsyncs_per_msg"] = syncs / row["accepted"] if row["accepted"] else None
                except (KeyError, ValueError, TypeError):
                    row["fsyncs_per_msg"] = None
                if row["accepted"] is None:
                    row["accepted"] = int(stats1["commits"]) - int(stats0["commits"])
            elif row["accepted"] is None:
                # smtp-source against Postfix: what the instance received.
                if server.delivers:
                    pass  # counted below from the sink
                else:
                    r = subprocess.run([POSTFIX_INSTANCE, "count", server.dir], capture_output=True, text=True,
                                       timeout=60)
                    row["accepted"] = int(r.stdout.strip() or 0)
            if server.delivers:
                target = row["accepted"] if row["accepted"] is not None else row["sent"]
                rep, waited = sink.wait_for(target, args.delivery_timeout)
                cpu1 = server.cpu()
                row["delivered"] = rep["messages"]
                if row["accepted"] is None:
                    row["accepted"] = rep["messages"]
                total = time.monotonic() - start if waited is None else (row["wall"] + waited)
                row["e2e_per_s"] = rep["messages"] / total if total else None
                row["e2e_p99_ms"] = rep.get("e2e_latency_ms", {}).get("p99")
            if cpu0 is not None and cpu1 is not None and row["accepted"]:
                row["server_us_per_msg"] = (cpu1 - cpu0) * 1e6 / row["accepted"]
            if threads0 is not None:
                row["thread_us_per_msg"] = cpu_per_message(threads0, thread_cpu_by_kind(server.proc.pid),
                                                            row["accepted"])
        if row["seconds"]:
            row["accepted_per_s"] = row["accepted"] / row["seconds"] if row["accepted"] is not None else None
        return row
    finally:
        if server:
            server.stop()
        sink.stop()


def print_table(rows):
    head = ["size", "conns", "system", "generator", "accepted", "acc msg/s", "p99 ms", "delivered", "e2e msg/s",
            "e2e p99 ms", "gen CPU%", "srv us/msg", "fsync/msg"]
    table = [head]
    for r in rows:
        if "error" in r:
            table.append([f'{r["size"] // 1024}k', str(r["connections"]), r["system"], r["generator"],
                          "FAILED: " + r["error"]] + [""] * 8)
            continue
        table.append([f'{r["size"] // 1024}k', str(r["connections"]), r["system"], r["generator"],
                      fmt(r.get("accepted"), "{}"), fmt(r.get("accepted_per_s")), fmt(r.get("p99_ms"), "{:.1f}"),
                      fmt(r.get("delivered"), "{}"), fmt(r.get("e2e_per_s")), fmt(r.get("e2e_p99_ms"), "{:.1f}"),
                      fmt(r.get("generator_cpu_pct")), fmt(r.get("server_us_per_msg")),
                      fmt(r.get("fsyncs_per_msg"), "{:.3f}")])
    print_aligned(table, 4)


def print_threads(rows):
    """ternd's CPU per accepted message by thread kind (load and delivery)."""
    tern = [r for r in rows if r.get("thread_us_per_msg")]
    if not tern:
        return
    # Threads idle in every row (the POP3 offload, the control socket...) are left out.
    kinds = sorted({k for r in tern for k, us in r["thread_us_per_msg"].items() if k != "all" and us >= 0.05})
    print()
    print("ternd CPU in microseconds per accepted message, by thread kind (until the sink had them all):")
    table = [["size", "conns", "generator", *kinds, "all"]]
    for r in tern:
        cpu = r["thread_us_per_msg"]
        table.append([f'{r["size"] // 1024}k', str(r["connections"]), r["generator"],
                      *(fmt(cpu.get(k), "{:.1f}") for k in kinds), fmt(cpu.get("all"), "{:.1f}")])
    print_aligned(table, 3)


def print_ratios(rows):
    def find(system, generator, size, conns, field="accepted_per_s"):
        for r in rows:
            if (r["system"], r["generator"], r["size"], r["connections"]) == (system, generator, size, conns):
                return r.get(field)
        return None

    seen = sorted({(r["size"], r["connections"]) for r in rows})
    for size, conns in seen:
        raw, tern = find("raw", "tern-bench", size, conns), find("tern", "tern-bench", size, conns)
        parts = []
        if raw and tern:
            parts.append(f"tern/raw {tern / raw:.2f}")
        for system in POSTFIX_MODES:
            pf = find(system, "tern-bench", size, conns)
            if tern and pf:
                parts.append(f"tern/{system} {tern / pf:.1f}x")
        tern_e2e = find("tern", "tern-bench", size, conns, "e2e_per_s")
        raw_e2e = find("raw", "tern-bench", size, conns, "e2e_per_s")
        if raw_e2e and tern_e2e:
            parts.append(f"end to end tern/raw {tern_e2e / raw_e2e:.2f}")
        for system in ("postfix", "postfix-tuned"):
            pf_e2e = find(system, "tern-bench", size, conns, "e2e_per_s")
            if tern_e2e and pf_e2e:
                parts.append(f"end to end tern/{system} {tern_e2e / pf_e2e:.1f}x")
        src, bench = find("raw", "smtp-source", size, conns), raw
        if src and bench:
            parts.append(f"tern-bench/smtp-source on the sink {bench / src:.2f}")
        if parts:
            print(f"  {size // 1024}k, {conns} connections: " + ", ".join(parts))


def ensure_postfix(install):
    if os.access("/usr/sbin/postfix", os.X_OK):
        return True
    if not install:
        log("Postfix is not installed: its rows and smtp-source are skipped (--with-postfix installs it)")
        return False
    log("installing Postfix from Debian (no system configuration; the package's own instance stays stopped)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["debconf-set-selections"], input="postfix postfix/main_mailer_type select No configuration\n",
                   text=True, check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postfix"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["postfix", "stop"], capture_output=True)
    return os.access("/usr/sbin/postfix", os.X_OK)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1k,100k", help="message sizes (default 1k,100k)")
    ap.add_argument("--connections", default="10,100", help="connection counts (default 10,100)")
    ap.add_argument("--messages-small", type=int, default=20000, help="messages per run up to 10 KiB (20000)")
    ap.add_argument("--messages-large", type=int, default=2000, help="messages per run above 10 KiB (2000)")
    ap.add_argument("--seconds", type=int, default=120, help="time limit per run (120)")
    ap.add_argument("--delivery-timeout", type=int, default=120,
                    help="how long to wait for relayed mail to reach the sink (120)")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help=f"which systems (default {','.join(SYSTEMS)})")
    ap.add_argument("--no-smtp-source", action="store_true", help="skip the smtp-source cross-check")
    ap.add_argument("--with-postfix", action="store_true", help="install Postfix from Debian if it is missing")
    add_common_options(ap)
    args = ap.parse_args()

    if not args.no_build:
        build_tools(args.build)
    tools = Tools(args.build)
    systems = [s for s in args.systems.split(",") if s]
    for s in systems:
        if s not in SYSTEMS:
            sys.exit(f"side_by_side: unknown system {s}")
    have_postfix = any(s.startswith("postfix") for s in systems) and ensure_postfix(args.with_postfix)
    if not have_postfix:
        systems = [s for s in systems if not s.startswith("postfix")]
    elif os.getuid() != 0:
        log("Postfix needs root (its master drops privileges): its rows are skipped")
        systems = [s for s in systems if not s.startswith("postfix")]
    generators = ["tern-bench"]
    if not args.no_smtp_source and os.access(SMTP_SOURCE, os.X_OK):
        generators.append("smtp-source")

    workdir = make_workdir(args.tmpdir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rows = []
    try:
        for size in [parse_size(s) for s in args.sizes.split(",")]:
            for conns in [int(c) for c in args.connections.split(",")]:
                for system in systems:
                    for gen in generators:
                        log(f"{size // 1024}k x {conns}: {gen} -> {system}")
                        try:
                            rows.append(measure(args, tools, system, gen, size, conns, workdir))
                        except (Failure, subprocess.TimeoutExpired, OSError) as e:
                            log(f"  not measured: {e}")
                            rows.append({"system": system, "generator": gen, "size": size, "connections": conns,
                                         "error": str(e)})
    finally:
        finish_workdir(workdir, args.keep)

    print()
    print(f"Side-by-side SMTP benchmark on {machine()}")
    print_table(rows)
    print_threads(rows)
    print("Ratios (msg/s, same run; accepted unless it says end to end):")
    print_ratios(rows)
    if args.json:
        write_json(args.json, rows)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
