"""What the SMTP benchmark scripts share: the tools they drive (tern-sink,
ternd, ternctl, tern-bench), building them, a disk-backed work directory, and
reading a process's CPU and memory from /proc."""
import json
import os
import platform
import shutil
import re
import signal
import subprocess
import sys
import tempfile
import time

from loopback import free_port, wait_banner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROG = os.path.basename(sys.argv[0]).removesuffix(".py")


def log(msg):
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


class Failure(Exception):
    """A measurement could not be taken; the caller says so and goes on or stops."""


def parse_size(text):
    units = {"k": 1024, "m": 1024 * 1024}
    t = text.strip().lower()
    if t and t[-1] in units:
        return int(t[:-1]) * units[t[-1]]
    return int(t)


def process_tree_cpu(root_pid):
    """CPU seconds (user+system, with reaped children) of root_pid and its
    direct children: ternd itself, or Postfix's master and its daemons."""
    hz = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if pid == str(root_pid) or fields[1] == str(root_pid):
            total += sum(int(x) for x in fields[11:15])
    return total / hz


def thread_cpu_by_kind(pid):
    """CPU seconds (user+system) of each kind of thread of pid: threads are
    grouped by name with a trailing number dropped, so tern-worker-0 and
    tern-worker-1 are one kind "tern-worker". Unnamed threads carry the
    process's name. Threads that already exited are not counted."""
    hz = os.sysconf("SC_CLK_TCK")
    kinds = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kinds
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended between listing and reading
        kind = re.sub(r"[-_.]?\d+$", "", name) or name
        kinds[kind] = kinds.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / hz
    return kinds


def cpu_per_message(before, after, messages):
    """Microseconds of CPU per message for each thread kind, and "all"."""
    if not messages:
        return {}
    kinds = {k: (after.get(k, 0.0) - before.get(k, 0.0)) * 1e6 / messages for k in sorted(after)}
    kinds["all"] = sum(kinds.values())
    return kinds


def rss_kib(pid):
    """Resident set size (VmRSS) of pid in KiB, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def disk_usage(path):
    """Bytes allocated on disk below path (what du counts: preallocated
    space included, holes excluded)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass  # removed meanwhile (a compaction's input, an old WAL)
    return total


def add_common_options(ap):
    """The options every SMTP benchmark script takes: what to run, where, and
    what to keep."""
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="CMake build directory (./build)")
    ap.add_argument("--no-build", action="store_true", help="do not build first")
    ap.add_argument("--tmpdir", default="/var/tmp", help="where spools go; not tmpfs (/var/tmp)")
    ap.add_argument("--json", help="also write the rows as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")


def fmt(v, spec="{:.0f}"):
    return "-" if v is None else spec.format(v)


def print_aligned(table, left_columns):
    """Prints rows of strings as columns: the first left_columns to the left,
    the figures to the right."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(c.ljust(w) if i < left_columns else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))


def stop_process(proc, timeout=10.0):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Tools:
    """The built binaries; exits when one is missing."""

    def __init__(self, build):
        self.bench = os.path.join(build, "tools", "tern_bench", "tern-bench")
        self.sink = os.path.join(build, "tools", "tern_sink", "tern-sink")
        self.ternd = os.path.join(build, "mta", "ternd")
        self.ternctl = os.path.join(build, "tools", "ternctl")
        for p in (self.bench, self.sink, self.ternd, self.ternctl):
            if not os.access(p, os.X_OK):
                sys.exit(f"{PROG}: {p} is not built")


def build_tools(build):
    """Configures (Release) when needed and builds what the benchmarks run."""
    if not os.path.exists(os.path.join(build, "CMakeCache.txt")):
        subprocess.run(["cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release"], check=True,
                       stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", build, "-j", str(os.cpu_count()), "--target", "ternd", "ternctl",
                    "tern-bench", "tern-sink"], check=True, stdout=subprocess.DEVNULL)


def make_workdir(tmpdir):
    """A fresh work directory under tmpdir, which must be a real disk: on a
    tmpfs fsync is free and a durable queue would look faster than it is."""
    os.makedirs(tmpdir, exist_ok=True)
    fstype = subprocess.run(["stat", "-f", "-c", "%T", tmpdir], capture_output=True, text=True).stdout.strip()
    if fstype in ("tmpfs", "ramfs"):
        sys.exit(f"{PROG}: {tmpdir} is {fstype}: durable queues must be measured on a disk (--tmpdir)")
    workdir = tempfile.mkdtemp(prefix=f"tern-{PROG}.", dir=tmpdir)
    # Postfix's daemons, running as "postfix", must be able to reach their queue below it.
    os.chmod(workdir, 0o755)
    return workdir


def finish_workdir(workdir, keep):
    if keep:
        log(f"work directory kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def machine():
    """Where and when, for the line above a table."""
    return (f"{platform.node()}: {os.cpu_count()} CPUs, kernel {platform.release()}, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def write_json(path, rows):
    with open(path, "w") as f:
        json.dump({"host": platform.node(), "cpus": os.cpu_count(), "kernel": platform.release(),
                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows}, f, indent=2)


class Sink:
    """A tern-sink on a free port; counts are read through its JSON report,
    which it rewrites on SIGUSR1."""

    def __init__(self, tools, workdir, name):
        self.port = free_port()
        self.json = os.path.join(workdir, f"{name}.sink.json")
        self.out = open(os.path.join(workdir, f"{name}.sink.out"), "w")
        self.proc = subprocess.Popen(
            [tools.sink, "--listen", f"127.0.0.1:{self.port}", "--json", self.json, "--quiet"],
            stdout=self.out, stderr=subprocess.STDOUT)
        if not wait_banner(self.port, self.proc):
            self.stop()
            raise Failure("tern-sink did not start")

    def snapshot(self):
        # Each report is a new file renamed over the old one, so a new inode
        # number says the report is fresh (two reports can share a
        # modification time: the file system's clock ticks in milliseconds).
        before = os.stat(self.json).st_ino if os.path.exists(self.json) else None
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if os.stat(self.json).st_ino != before:
                    with open(self.json) as f:
                        return json.load(f)
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        raise Failure("tern-sink did not write its report")

    def wait_for(self, count, timeout):
        """Polls until the sink has `count` messages; returns (report, seconds
        from now until the last one arrived, or None if it never did)."""
        start = time.monotonic()
        report = self.snapshot()
        while report["messages"] < count and time.monotonic() - start < timeout:
            time.sleep(0.1)
            report = self.snapshot()
        return report, (time.monotonic() - start) if report["messages"] >= count else None

    def stop(self):
        stop_process(self.proc)
        self.out.close()


class Tern:
    """A ternd on a fresh spool under workdir/name, relaying everything to the
    sink on sink_port (routing.forward_host, as Postfix's relayhost).
    It relays for `relay_domains`; `extra_config` is TOML appended to the
    generated configuration; `finished_retention` (a duration) sets
    queue.finished_retention, ternd's default when None; `delivery_loops` is
    delivery.loops (0: as many as the workers)."""
    delivers = True

    def __init__(self, tools, workdir, name, connections, sink_port, relay_domains=("sink.test",), extra_config="",
                 finished_retention=None, delivery_loops=0):
        self.tools = tools
        self.dir = os.path.join(workdir, name)
        d = self.dir
        os.makedirs(d)
        self.spool = os.path.join(d, "spool")
        self.port = free_port()
        self.socket = os.path.join(d, "ternd.sock")
        cfg = os.path.join(d, "ternd.toml")
        with open(cfg, "w") as f:
            f.write(f"""[server]
hostname = "tern.bench.test"
drain_timeout = "5s"

[smtp]
listen = ["127.0.0.1:{self.port}"]
max_connections_per_ip = {max(1000, connections * 2)}

[relay]
relay_domains = {json.dumps(list(relay_domains))}

[queue]
directory = "{self.spool}"
min_free_space = "1MB"
{f'finished_retention = "{finished_retention}"' if finished_retention else ""}

[control]
socket = "{self.socket}"

[log]
target = "file"
file = "{d}/ternd.log"

[delivery]
loops = {delivery_loops}
max_per_destination = 20
# Postfix's relay client does not use TLS either.
tls = "none"

[routing]
# Everything to the sink, as Postfix's relayhost: no DNS in the measurement.
forward_host = "[127.0.0.1]:{sink_port}"

[dns]
servers = ["127.0.0.1:9"]
{extra_config}""")
        self.sink_port = sink_port
        self.out = open(os.path.join(d, "ternd.out"), "w")
        self.proc = subprocess.Popen([tools.ternd, "--config", cfg], stdout=self.out, stderr=subprocess.STDOUT)
        if not wait_banner(self.port, self.proc):
            self.stop()
            raise Failure(f"ternd did not start (see {d}/ternd.out)")

    def ctl(self, *args):
        """Runs ternctl against this ternd; returns its stdout, raises Failure
        when it fails."""
        r = subprocess.run([self.tools.ternctl, "--socket", self.socket, *args], capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 0:
            raise Failure(f"ternctl {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def ctl_start(self, *args):
        """Starts ternctl against this ternd without waiting for it."""
        return subprocess.Popen([self.tools.ternctl, "--socket", self.socket, *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    def stats(self):
        return {k: v for k, v in (line.split(None, 1) for line in self.ctl("stats").splitlines() if " " in line)}

    def cpu(self):
        return process_tree_cpu(self.proc.pid)

    def stop(self):
        stop_process(self.proc)
        self.out.close()
