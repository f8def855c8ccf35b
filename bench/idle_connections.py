#!/usr/bin/python3
"""Memory per idle SMTP connection in ternd.

Starts ternd with a generated configuration (connection limits raised to
20000), measures its resident set size (VmRSS), opens --connections
connections to it (non-blocking connects in batches, each waits for its 220
banner), measures VmRSS again and prints the difference per connection,
holds the connections for --hold seconds, closes them all and stops ternd.

Only 127.0.0.1 is used. The whole run is bounded by --max-seconds.
Exit status: 0 when ternd survived (whatever it measured), 1 when ternd died
or could not start, 2 for bad arguments or environment.

    /usr/bin/python3 bench/idle_connections.py [--ternd build/mta/ternd] [--connections 10000]
"""
import argparse
import errno
import json
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from loopback import free_port, wait_banner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(msg):
    print(f"idle_connections: {msg}", file=sys.stderr, flush=True)


def vm_status(pid):
    """VmRSS, RssAnon, VmHWM (KiB) from /proc/PID/status."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM", "Threads"):
                out[key] = int(value.split()[0])
    return out


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


class Opener:
    """Opens connections in batches with epoll and reads each one's banner."""

    def __init__(self, port, deadline):
        self.port = port
        self.deadline = deadline
        self.ep = select.epoll()
        self.socks = {}     # fd -> socket, connections holding a 220 banner
        self.pending = {}   # fd -> [socket, state, buffer]
        self.errors = {}    # kind -> count
        self.rejected = {}  # reply code -> count (421 beyond the limit, ...)

    def _fail(self, fd, kind):
        s = self.pending.pop(fd)[0]
        try:
            self.ep.unregister(fd)
        except OSError:
            pass
        s.close()
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def batch(self, n):
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            rc = s.connect_ex(("127.0.0.1", self.port))
            if rc not in (0, errno.EINPROGRESS):
                s.close()
                kind = "connect: " + os.strerror(rc)
                self.errors[kind] = self.errors.get(kind, 0) + 1
                continue
            self.pending[s.fileno()] = [s, "connecting", b""]
            self.ep.register(s.fileno(), select.EPOLLOUT | select.EPOLLIN)
        # Wait for this batch's banners (at most 10 s per batch).
        batch_deadline = min(self.deadline, time.monotonic() + 10)
        while self.pending and time.monotonic() < batch_deadline:
            for fd, ev in self.ep.poll(0.2):
                entry = self.pending.get(fd)
                if entry is None:
                    continue
                s, state, buf = entry
                if state == "connecting":
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        self._fail(fd, "connect: " + os.strerror(err))
                        continue
                    entry[1] = "banner"
                    self.ep.modify(fd, select.EPOLLIN)
                    if not ev & select.EPOLLIN:
                        continue
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError as e:
                    self._fail(fd, "read: " + e.strerror)
                    continue
                if not data:
                    self._fail(fd, "closed before the banner")
                    continue
                buf = entry[2] = buf + data
                # The banner ends with a line "220 ..." (earlier lines "220-...").
                lines = buf.split(b"\r\n")
                for line in lines[:-1]:
                    if len(line) >= 4 and line[3:4] == b"-":
                        continue
                    code = line[:3].decode("ascii", "replace")
                    if code == "220":
                        self.ep.unregister(fd)
                        self.socks[fd] = s
                        del self.pending[fd]
                    else:
                        self.rejected[code] = self.rejected.get(code, 0) + 1
                        self._fail(fd, f"banner {code}")
                    break
        for fd in list(self.pending):
            self._fail(fd, "banner: timeout")

    def close_all(self):
        for s in self.socks.values():
            s.close()
        self.socks.clear()
        self.ep.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    build = os.environ.get("BUILD", "build")
    if not os.path.isabs(build):
        build = os.path.join(ROOT, build)
    ap.add_argument("--ternd", default=os.path.join(build, "mta", "ternd"))
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--hold", type=float, default=5.0, help="seconds to hold the connections open")
    ap.add_argument("--max-seconds", type=float, default=120.0)
    ap.add_argument("--workers", type=int, default=0, help="ternd [server] workers (0 = one per CPU)")
    ap.add_argument("--tmpdir", default=os.environ.get("BENCH_TMPDIR", "/var/tmp"))
    ap.add_argument("--json", default=os.environ.get("BENCH_JSON_IDLE"))
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    if args.connections < 1 or args.connections > 20000 or args.batch < 1:
        ap.error("--connections must be 1..20000, --batch positive")
    if not os.access(args.ternd, os.X_OK):
        log(f"{args.ternd} not found (cmake --build build --target ternd)")
        return 2

    start = time.monotonic()
    deadline = start + args.max_seconds

    # Descriptors: ours and ternd's (inherited through Popen).
    need = args.connections + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(need, hard)))
        except (ValueError, OSError) as e:
            # Not allowed to raise the hard limit: use all of it.
            if hard != resource.RLIM_INFINITY and hard - 1024 < args.connections:
                if hard <= 2048:
                    log(f"cannot raise RLIMIT_NOFILE to {need} ({e}); run as root or raise the hard limit")
                    return 2
                log(f"cannot raise RLIMIT_NOFILE above the hard limit {hard} ({e}); "
                    f"opening {hard - 1024} connections instead of {args.connections}")
                args.connections = hard - 1024
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port_range = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
    if int(port_range[1]) - int(port_range[0]) < args.connections + 100:
        log(f"warning: ephemeral port range {port_range} is smaller than {args.connections} connections")

    os.makedirs(args.tmpdir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="tern-idle.", dir=args.tmpdir)
    port = free_port()
    cfg = os.path.join(work, "ternd.toml")
    with open(cfg, "w") as f:
        f.write(f"""[server]
hostname = "tern-bench.localdomain"
workers = {args.workers}
drain_timeout = "2s"

[smtp]
listen = ["127.0.0.1:{port}"]
max_connections = 20000
max_connections_per_ip = 20000

[relay]
local_domains = ["sink.test"]

[queue]
directory = "{work}/spool"
min_free_space = "1MB"

[control]
socket = "{work}/ternd.sock"

[log]
target = "file"
file = "{work}/ternd.log"
""")
    out = open(os.path.join(work, "ternd.out"), "w")
    proc = subprocess.Popen([args.ternd, "--config", cfg], stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    result = {"benchmark": "idle_connections", "connections_requested": args.connections}
    rc = 0
    opener = None
    try:
        if not wait_banner(port, proc, min(deadline - time.monotonic(), 15)):
            log("ternd did not come up; its output:")
            out.flush()
            sys.stderr.write(open(os.path.join(work, "ternd.out")).read()[-2000:])
            return 1
        time.sleep(0.5)
        before = vm_status(proc.pid)
        fds_before = fd_count(proc.pid)
        log(f"ternd pid {proc.pid} on 127.0.0.1:{port}: VmRSS {before['VmRSS']} KiB, "
            f"{before.get('Threads')} threads, {fds_before} fds")

        opener = Opener(port, deadline)
        t0 = time.monotonic()
        while len(opener.socks) < args.connections and time.monotonic() < deadline - args.hold - 5:
            if proc.poll() is not None:
                break
            want = min(args.batch, args.connections - len(opener.socks))
            failures_before = sum(opener.errors.values())
            opener.batch(want)
            if sum(opener.errors.values()) - failures_before >= want:
                log(f"a whole batch failed ({opener.errors}); stopping")
                break
        open_seconds = time.monotonic() - t0
        opened = len(opener.socks)
        result["errors"] = dict(opener.errors)
        result["rejected_banners"] = dict(opener.rejected)
        time.sleep(1.0)  # let ternd settle (and its allocator)
        if proc.poll() is not None:
            log(f"ternd died while connections were opened (exit {proc.returncode})")
            return 1
        after = vm_status(proc.pid)
        fds_after = fd_count(proc.pid)
        # ternd's own count, when ternctl is built next to it.
        ternd_conns = None
        ternctl = os.path.join(os.path.dirname(os.path.dirname(args.ternd)), "tools", "ternctl")
        if os.access(ternctl, os.X_OK):
            try:
                st = subprocess.run([ternctl, "--socket", os.path.join(work, "ternd.sock"), "stats"],
                                    capture_output=True, text=True, timeout=10).stdout
                for line in st.splitlines():
                    k, _, v = line.partition(" ")
                    if k == "connections" and v.strip().isdigit():
                        ternd_conns = int(v)
            except (OSError, subprocess.TimeoutExpired):
                pass
        delta = after["VmRSS"] - before["VmRSS"]
        per = delta / opened if opened else float("nan")
        anon_per = (after.get("RssAnon", 0) - before.get("RssAnon", 0)) / opened if opened else float("nan")
        log(f"holding {opened} connections for {args.hold:g} s")
        hold_end = min(deadline - 2, time.monotonic() + args.hold)
        while time.monotonic() < hold_end and proc.poll() is None:
            time.sleep(0.2)
        alive_while_held = proc.poll() is None
        held = vm_status(proc.pid) if alive_while_held else None
        opener.close_all()
        opener = None
        time.sleep(1.0)
        closed = vm_status(proc.pid) if proc.poll() is None else None

        result.update({
            "connections_opened": opened, "open_seconds": round(open_seconds, 3),
            "rss_kib_before": before["VmRSS"], "rss_kib_with_connections": after["VmRSS"],
            "rss_kib_after_hold": held["VmRSS"] if held else None,
            "rss_kib_after_close": closed["VmRSS"] if closed else None,
            "rss_kib_peak": (closed or held or after).get("VmHWM"),
            "kib_per_connection": round(per, 3), "anon_kib_per_connection": round(anon_per, 3),
            "ternd_fds_before": fds_before, "ternd_fds_with_connections": fds_after,
            "ternd_threads": after.get("Threads"),
            "ternd_reported_connections": ternd_conns,
        })
        print(f"ternd idle connections: {opened} of {args.connections} opened in {open_seconds:.1f} s")
        print(f"  VmRSS before        {before['VmRSS']:>9} KiB")
        print(f"  VmRSS with conns    {after['VmRSS']:>9} KiB  (+{delta} KiB)")
        if held:
            print(f"  VmRSS after hold    {held['VmRSS']:>9} KiB")
        if closed:
            print(f"  VmRSS after close   {closed['VmRSS']:>9} KiB")
        print(f"  ternd descriptors   {fds_before} -> {fds_after}")
        if ternd_conns is not None:
            print(f"  ternctl connections {ternd_conns}")
        if result["errors"]:
            print(f"  failed connections  {result['errors']}")
        print(f"  KiB per connection  {per:.2f}  (anonymous memory {anon_per:.2f})")
        if proc.poll() is not None:
            log(f"ternd died (exit {proc.returncode})")
            rc = 1
        result["ternd_alive"] = rc == 0
        return rc
    finally:
        if opener is not None:
            opener.close_all()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log("ternd did not stop within 10 s of SIGTERM; killing it")
                proc.kill()
                proc.wait()
        result["ternd_exit_status"] = proc.returncode
        out.close()
        if args.json and "connections_opened" in result:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
                f.write("\n")
        if args.keep:
            log(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
