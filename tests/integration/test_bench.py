"""tern-bench against servers nobody here wrote (Python's aiosmtpd), against
ternd (STARTTLS, BDAT) and against tern-sink (faults): the counts tern-bench
reports must equal what the server saw.

The aiosmtpd server runs in a subprocess (SERVER below): it prints
"ready PORT", then answers "stats" on stdin with one JSON line of what it
counted, and exits on EOF.
"""
import json
import os
import subprocess
import time

import pytest

from conftest import BUILD, free_port

BENCH = os.path.join(BUILD, "tools", "tern_bench", "tern-bench")
PYTHON = "/usr/bin/python3"

SERVER = r'''
import asyncio, json, re, sys, threading
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

opts = json.loads(sys.argv[1])

class Handler:
    def __init__(self):
        self.lock = threading.Lock()
        self.messages = 0          # accepted after DATA
        self.recipients = 0        # recipients of accepted messages
        self.rcpt_ok = 0
        self.rcpt_450 = 0
        self.rcpt_550 = 0
        self.ehlo = 0              # one per connection (no STARTTLS here)
        self.sizes = []
        self.message_ids = set()
        self.stamped = 0
        self.auth_ok = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.lock:
            self.ehlo += 1
        session.host_name = hostname
        if opts.get("pipelining"):
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        # --fault: "user{n}@..." with n % 4 == 0 -> 450, n % 4 == 1 -> 550.
        m = re.match(r"user(\d+)@", address)
        if opts.get("fault") and m:
            n = int(m.group(1))
            if n % 4 == 0:
                with self.lock:
                    self.rcpt_450 += 1
                return "450 4.2.0 try again later"
            if n % 4 == 1:
                with self.lock:
                    self.rcpt_550 += 1
                return "550 5.1.1 no such user"
        with self.lock:
            self.rcpt_ok += 1
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content
        head = content.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
        mid = re.search(r"^Message-ID: (.*)$", head, re.M | re.I)
        with self.lock:
            self.messages += 1
            self.recipients += len(envelope.rcpt_tos)
            self.sizes.append(len(content))
            if mid:
                self.message_ids.add(mid.group(1).strip())
            if re.search(r"^X-Tern-Bench-Sent: \d{16}\s*$", head, re.M):
                self.stamped += 1
        return "250 2.0.0 OK queued"

    def stats(self):
        with self.lock:
            return {"messages": self.messages, "recipients": self.recipients, "rcpt_ok": self.rcpt_ok,
                    "rcpt_450": self.rcpt_450, "rcpt_550": self.rcpt_550, "ehlo": self.ehlo,
                    "sizes": self.sizes, "unique_message_ids": len(self.message_ids),
                    "stamped": self.stamped, "auth_ok": self.auth_ok}

handler = Handler()

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == b"benchuser"
          and auth_data.password == b"s3cret")
    if ok:
        with handler.lock:
            handler.auth_ok += 1
    return AuthResult(success=ok, handled=False)

kwargs = {}
if opts.get("auth"):
    kwargs = dict(authenticator=authenticator, auth_required=True, auth_require_tls=False)
controller = Controller(handler, hostname="127.0.0.1", port=opts["port"], **kwargs)
controller.start()
print("ready", opts["port"], flush=True)
for line in sys.stdin:
    if line.strip() == "stats":
        print(json.dumps(handler.stats()), flush=True)
controller.stop()
'''


class PyServer:
    def __init__(self, workdir, **opts):
        self.port = free_port()
        opts["port"] = self.port
        script = os.path.join(workdir, "aiosmtpd_server.py")
        with open(script, "w") as f:
            f.write(SERVER)
        self.proc = subprocess.Popen([PYTHON, script, json.dumps(opts)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            self.proc.kill()
            raise AssertionError(f"aiosmtpd did not start: {line!r} {self.proc.stderr.read()}")

    def stats(self):
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(10)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def pyserver(workdir):
    servers = []

    def start(**opts):
        s = PyServer(workdir, **opts)
        servers.append(s)
        return s
    yield start
    for s in servers:
        s.stop()


def bench(workdir, port, *args, timeout=60, host="127.0.0.1"):
    """Runs tern-bench; returns (CompletedProcess, report dict or None)."""
    assert os.access(BENCH, os.X_OK), f"{BENCH} not built"
    report = os.path.join(workdir, f"bench-{time.monotonic_ns()}.json")
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    r = subprocess.run([BENCH, "--target", target, "--json", report, "--timeout", "10", *args],
                       capture_output=True, text=True, timeout=timeout)
    rep = None
    if os.path.exists(report) and os.path.getsize(report):
        with open(report) as f:
            rep = json.load(f)
    return r, rep


def check_invariants(rep):
    assert rep["sent"] == rep["accepted"] + rep["temp_failed"] + rep["perm_failed"] + rep["connection_errors"], rep
    assert rep["latency_ms"]["message"]["count"] == rep["accepted"], rep
    assert sum(rep["accepted_per_second"]) == rep["accepted"], rep


# ------------------------------------------------------------------ aiosmtpd

@pytest.mark.parametrize("pipelining", [True, False])
def test_counts_match_aiosmtpd(workdir, pyserver, pipelining):
    srv = pyserver(pipelining=True)
    args = ["--messages", "300", "--connections", "5", "--quiet"]
    if not pipelining:
        args.append("--no-pipelining")
    r, rep = bench(workdir, srv.port, *args)
    assert r.returncode == 0, r.stderr
    st = srv.stats()
    check_invariants(rep)
    assert rep["pipelining"] is pipelining
    assert rep["sent"] == 300
    assert rep["accepted"] == st["messages"] == 300
    assert rep["recipients_accepted"] == st["recipients"] == 300
    assert rep["temp_failed"] == rep["perm_failed"] == rep["connection_errors"] == 0
    assert st["unique_message_ids"] == 300, "every Message-ID distinct"
    assert st["stamped"] == 300, "every message carries X-Tern-Bench-Sent"
    assert st["ehlo"] == 5, "one connection each for the whole run (--per-connection 0)"
    assert all(abs(s - 1024) <= 78 for s in st["sizes"]), st["sizes"][:10]
    assert rep["connections_opened"] == 5


def test_recipients_per_message(workdir, pyserver):
    srv = pyserver(pipelining=True)
    r, rep = bench(workdir, srv.port, "--messages", "60", "--connections", "3", "--recipients", "3", "--quiet")
    assert r.returncode == 0, r.stderr
    st = srv.stats()
    check_invariants(rep)
    assert rep["accepted"] == st["messages"] == 60
    assert rep["recipients_accepted"] == st["recipients"] == 180


def test_size_distribution(workdir, pyserver):
    srv = pyserver()
    r, rep = bench(workdir, srv.port, "--messages", "200", "--connections", "4", "--size", "1k:50,10k:30,50k:20",
                   "--seed", "7", "--quiet")
    assert r.returncode == 0, r.stderr
    st = srv.stats()
    assert rep["accepted"] == st["messages"] == 200
    buckets = {1024: 0, 10240: 0, 51200: 0}
    for s in st["sizes"]:
        target = min(buckets, key=lambda t: abs(t - s))
        assert abs(target - s) <= 78, s
        buckets[target] += 1
    # 200 draws: each weight within a generous band.
    assert 70 <= buckets[1024] <= 130, buckets
    assert 35 <= buckets[10240] <= 85, buckets
    assert 15 <= buckets[51200] <= 65, buckets
    assert rep["bytes_accepted"] == sum(st["sizes"]), (rep["bytes_accepted"], sum(st["sizes"]))


def test_per_connection_reconnects(workdir, pyserver):
    srv = pyserver(pipelining=True)
    r, rep = bench(workdir, srv.port, "--messages", "40", "--connections", "2", "--per-connection", "5", "--quiet")
    assert r.returncode == 0, r.stderr
    st = srv.stats()
    assert rep["accepted"] == st["messages"] == 40
    # The workers share one message counter, so the 40 can split unevenly
    # (21 + 19 needs 5 + 4 connections); 5 per connection allows 8 or 9.
    assert rep["connections_opened"] in (8, 9), rep["connections_opened"]
    assert st["ehlo"] == rep["connections_opened"]


def test_rate_paces_the_run(workdir, pyserver):
    srv = pyserver(pipelining=True)
    r, rep = bench(workdir, srv.port, "--messages", "60", "--connections", "4", "--rate", "40", "--quiet")
    assert r.returncode == 0, r.stderr
    assert rep["accepted"] == srv.stats()["messages"] == 60
    # 60 messages at 40/s: the last starts at 1.475 s.
    assert 1.3 <= rep["elapsed_s"] <= 4.0, rep["elapsed_s"]
    assert rep["rate"] == 40


def test_duration_bounds_the_run(workdir, pyserver):
    srv = pyserver(pipelining=True)
    t0 = time.monotonic()
    r, rep = bench(workdir, srv.port, "--duration", "1", "--connections", "2", "--rate", "100", "--quiet")
    wall = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert rep["messages_requested"] == 0
    assert 80 <= rep["accepted"] <= 101, rep["accepted"]
    assert rep["accepted"] == srv.stats()["messages"]
    assert wall < 10


@pytest.mark.parametrize("mechanism", ["plain", "login"])
def test_auth(workdir, pyserver, mechanism):
    srv = pyserver(auth=True, pipelining=True)
    r, rep = bench(workdir, srv.port, "--messages", "20", "--connections", "2", "--auth", mechanism,
                   "--user", "benchuser", "--password", "s3cret", "--quiet")
    assert r.returncode == 0, r.stderr
    st = srv.stats()
    assert rep["auth"] == mechanism
    assert rep["accepted"] == st["messages"] == 20
    assert st["auth_ok"] == 2
    # A wrong password: every message fails permanently (535), nothing is accepted.
    r, rep = bench(workdir, srv.port, "--messages", "10", "--connections", "2", "--auth", mechanism,
                   "--user", "benchuser", "--password", "wrong", "--quiet")
    assert r.returncode == 0, r.stderr
    assert rep["accepted"] == 0 and rep["perm_failed"] == 10, rep
    assert srv.stats()["messages"] == 20


@pytest.mark.parametrize("pipelining", [True, False])
def test_rejections_are_counted_exactly(workdir, pyserver, pipelining):
    srv = pyserver(fault=True, pipelining=True)
    args = ["--messages", "100", "--connections", "4", "--quiet"]
    if not pipelining:
        args.append("--no-pipelining")
    r, rep = bench(workdir, srv.port, *args)
    assert r.returncode == 0, r.stderr
    st = srv.stats()
    check_invariants(rep)
    # Recipients user0..user99: n % 4 == 0 -> 450, n % 4 == 1 -> 550.
    assert st["rcpt_450"] == 25 and st["rcpt_550"] == 25
    assert rep["temp_failed"] == 25
    assert rep["perm_failed"] == 25
    assert rep["accepted"] == st["messages"] == 50
    assert rep["recipients_rejected"] == 50
    assert rep["connection_errors"] == 0


def test_json_fields_and_plot(workdir, pyserver):
    srv = pyserver(pipelining=True)
    plot = os.path.join(workdir, "run.svg")
    r, rep = bench(workdir, srv.port, "--messages", "100", "--connections", "2", "--plot", plot)
    assert r.returncode == 0, r.stderr
    for key in ("tool", "target", "run_id", "messages_requested", "duration_requested_s", "connections",
                "per_connection", "recipients_per_message", "size", "rate", "threads", "pipelining", "starttls",
                "bdat", "auth", "elapsed_s", "sent", "accepted", "temp_failed", "perm_failed",
                "connection_errors", "recipients_accepted", "recipients_rejected", "connections_opened",
                "connect_failures", "bytes_accepted", "accepted_per_s", "mb_per_s", "latency_ms", "cpu",
                "accepted_per_second", "errors"):
        assert key in rep, key
    check_invariants(rep)
    for phase in ("connect", "banner", "envelope", "data", "message"):
        lat = rep["latency_ms"][phase]
        assert set(lat) >= {"count", "p50", "p90", "p99", "p99_9", "max", "mean"}, lat
        assert lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99_9"] <= lat["max"], (phase, lat)
    assert rep["latency_ms"]["connect"]["count"] == 2
    assert rep["latency_ms"]["message"]["count"] == 100
    assert rep["cpu"]["user_s"] + rep["cpu"]["sys_s"] > 0
    assert rep["cpu"]["percent_of_one_core"] >= 0
    assert rep["accepted_per_s"] == pytest.approx(rep["accepted"] / rep["elapsed_s"], rel=0.01)
    assert rep["threads"] == 2
    # Text report on stdout (no --quiet), no progress line when stderr is not a TTY.
    assert "accepted 100" in r.stdout
    assert r.stderr == ""
    svg = open(plot).read()
    assert svg.startswith("<?xml") and svg.rstrip().endswith("</svg>")
    assert 'id="throughput"' in svg and 'id="latency-message"' in svg


# ------------------------------------------------------------------ runs that fail

def test_connection_refused_exits_zero(workdir):
    port = free_port()  # nothing listens there
    r, rep = bench(workdir, port, "--messages", "30", "--connections", "3", "--quiet")
    assert r.returncode == 0, r.stderr
    assert rep["sent"] == 30
    assert rep["connection_errors"] == 30
    assert rep["accepted"] == 0
    assert rep["connections_opened"] == 0 and rep["connect_failures"] == 30
    assert any("refused" in k.lower() for k in rep["errors"]), rep["errors"]


def test_server_closing_mid_run_counts_connection_errors(workdir):
    """A server that answers the banner and EHLO, then closes."""
    import socket
    import threading
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    port = lsock.getsockname()[1]
    stop = threading.Event()

    def serve():
        lsock.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = lsock.accept()
            except OSError:
                continue
            try:
                c.sendall(b"220 hello\r\n")
                c.recv(1024)
                c.sendall(b"250 hi\r\n")
                c.recv(1024)  # MAIL
            except OSError:
                pass
            c.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        r, rep = bench(workdir, port, "--messages", "10", "--connections", "2", "--quiet")
    finally:
        stop.set()
        t.join(5)
        lsock.close()
    assert r.returncode == 0, r.stderr
    assert rep["connection_errors"] == 10 and rep["accepted"] == 0, rep
    check_invariants(rep)


def test_bad_options_exit_2(workdir):
    for args, name in ((["--target", "127.0.0.1:1", "--messages", "zero"], "--messages"),
                       (["--target", "nonsense"], "--target"),
                       (["--target", "127.0.0.1:1", "--size", "1k:x"], "--size"),
                       (["--target", "127.0.0.1:1", "--bogus"], "--bogus"),
                       ([], "--target")):
        r = subprocess.run([BENCH, *args], capture_output=True, text=True, timeout=10)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert name in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stdout == ""
    # An unwritable report path fails before the run.
    r = subprocess.run([BENCH, "--target", "127.0.0.1:1", "--json", "/nonexistent/dir/r.json"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "--json" in r.stderr


def test_help_lists_every_option():
    r = subprocess.run([BENCH, "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0
    for opt in ("--target", "--messages", "--duration", "--connections", "--per-connection", "--recipients",
                "--size", "--from", "--to", "--domains", "--no-pipelining", "--starttls", "--auth", "--user",
                "--password", "--bdat", "--rate", "--threads", "--timeout", "--helo", "--json", "--plot",
                "--quiet", "--help"):
        assert opt in r.stdout, opt
    assert "default" in r.stdout


# ------------------------------------------------------------------ ternd

def _queued(ternd):
    q = ternd.queue()
    return len(q), sum(len(e["recipients"]) for e in q)


def test_bdat_against_ternd(workdir, ternd):
    r, rep = bench(workdir, ternd.port, "--messages", "50", "--connections", "2", "--recipients", "2",
                   "--to", "user{n}@local.test", "--bdat", "--size", "20k", "--quiet")
    assert r.returncode == 0, r.stderr
    check_invariants(rep)
    assert rep["bdat"] is True and rep["pipelining"] is True
    assert rep["accepted"] == 50, rep
    assert _queued(ternd) == (50, 100)
    # Every message arrived whole: the size in the queue is the size sent (plus our Received: header).
    sizes = [e["size"] for e in ternd.queue()] if "size" in ternd.queue()[0] else []
    for s in sizes:
        assert 20480 - 78 <= s <= 20480 + 78 + 1000, s


def test_bdat_without_pipelining_against_ternd(workdir, ternd):
    r, rep = bench(workdir, ternd.port, "--messages", "20", "--connections", "2", "--to", "user{n}@local.test",
                   "--bdat", "--no-pipelining", "--quiet")
    assert r.returncode == 0, r.stderr
    assert rep["bdat"] is True and rep["pipelining"] is False
    assert rep["accepted"] == 20
    assert _queued(ternd) == (20, 20)


def test_starttls_against_ternd(workdir, ternd_factory, cert_pair):
    cert, key = cert_pair
    t = ternd_factory({"tls": {"certificate": cert, "private_key": key}})
    r, rep = bench(workdir, t.port, "--messages", "30", "--connections", "3", "--to", "user{n}@local.test",
                   "--starttls", "--quiet")
    assert r.returncode == 0, r.stderr
    check_invariants(rep)
    assert rep["starttls"] is True
    assert rep["accepted"] == 30, rep
    assert _queued(t) == (30, 30)
    assert len(t.events("tls")) == 3, "one TLS session per connection"


def test_starttls_not_offered_is_a_connection_error(workdir, ternd):
    r, rep = bench(workdir, ternd.port, "--messages", "6", "--connections", "2", "--to", "user{n}@local.test",
                   "--starttls", "--quiet")
    assert r.returncode == 0, r.stderr
    assert rep["accepted"] == 0 and rep["connection_errors"] == 6, rep
    assert any("STARTTLS" in k for k in rep["errors"]), rep["errors"]


def test_ipv6_target(workdir, ternd_factory):
    import socket
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
    except OSError:
        pytest.skip("no IPv6 loopback")
    port = free_port(socket.AF_INET6, "::1")
    t = ternd_factory(start=False)
    t.extra_listen = [f"[::1]:{port}"]
    t.start()
    r, rep = bench(workdir, port, "--messages", "10", "--connections", "2", "--to", "user{n}@local.test",
                   "--quiet", host="::1")
    assert r.returncode == 0, r.stderr
    assert rep["target"] == f"[::1]:{port}"
    assert rep["accepted"] == 10
    assert _queued(t)[0] == 10


# ------------------------------------------------------------------ tern-sink

@pytest.fixture
def sink(sink_factory):
    return sink_factory


@pytest.mark.parametrize("extra", [[], ["--bdat"], ["--no-pipelining"]])
def test_counts_match_tern_sink(workdir, sink, extra):
    s = sink()
    r, rep = bench(workdir, s.port, "--messages", "2000", "--connections", "8", "--recipients", "2",
                   "--quiet", *extra)
    assert r.returncode == 0, r.stderr
    check_invariants(rep)
    got = s.report()
    assert rep["accepted"] == got["messages"] == 2000, got
    assert rep["recipients_accepted"] == got["recipients"] == 4000, got


def test_fault_counts_match_tern_sink(workdir, sink):
    s = sink("--fault", "rcpt=450:0.25", "--fault", "dot=554:0.5")
    r, rep = bench(workdir, s.port, "--messages", "400", "--connections", "4", "--quiet")
    assert r.returncode == 0, r.stderr
    check_invariants(rep)
    got = s.report()
    # 400 recipients: floor(400 * 0.25) = 100 get 450; the 300 messages that reach
    # the content: floor(300 * 0.5) = 150 get 554.
    assert rep["temp_failed"] == 100, rep
    assert rep["perm_failed"] == 150, rep
    assert rep["accepted"] == 150 == got["messages"], got
    assert rep["recipients_rejected"] == 100


def test_hidden_pipelining_on_tern_sink(workdir, sink):
    s = sink("--hide", "PIPELINING")
    r, rep = bench(workdir, s.port, "--messages", "200", "--connections", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    assert rep["pipelining"] is False
    assert rep["accepted"] == s.report()["messages"] == 200


@pytest.mark.parametrize("sink_args,bench_args,field,point,kind", [
    (["--fault", "mail=550:0.5"], [], "perm_failed", "mail", "faults"),
    (["--fault", "data=451:0.5"], [], "temp_failed", "data", "faults"),
    (["--fault", "data=452:0.5"], ["--no-pipelining"], "temp_failed", "data", "faults"),
    (["--fault", "data=554:0.3"], ["--bdat"], "perm_failed", "data", "faults"),
    (["--fault", "dot=451:0.3"], ["--bdat", "--no-pipelining"], "temp_failed", "dot", "faults"),
    (["--fault", "banner=421:0.3"], ["--per-connection", "5"], "temp_failed", "banner", "faults"),
    (["--fault", "helo=421:0.3"], ["--per-connection", "5"], "temp_failed", "helo", "faults"),
    (["--fault", "banner=554:0.3"], ["--per-connection", "5"], "perm_failed", "banner", "faults"),
    (["--drop", "rcpt:0.1"], [], "connection_errors", "rcpt", "drops"),
    (["--drop", "dot:0.1"], ["--bdat"], "connection_errors", "dot", "drops"),
])
def test_each_fault_point_counted_like_the_sink(workdir, sink, sink_args, bench_args, field, point, kind):
    s = sink(*sink_args)
    r, rep = bench(workdir, s.port, "--messages", "300", "--connections", "3", "--quiet", *bench_args)
    assert r.returncode == 0, r.stderr
    check_invariants(rep)
    got = s.report()
    assert got[kind][point] > 0, got
    assert rep[field] == got[kind][point], (field, rep, got)
    assert rep["accepted"] == got["messages"], got
    assert rep["sent"] == 300
    assert rep["accepted"] + rep[field] == 300, rep


def test_rate_latency_counts_from_the_scheduled_start(workdir, sink):
    """A server slower than the rate: latency includes the wait (no coordinated omission)."""
    s = sink("--delay", "dot=100")
    # Open loop: every message takes ~100 ms.
    r, rep = bench(workdir, s.port, "--messages", "10", "--connections", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    assert 90 <= rep["latency_ms"]["message"]["max"] < 600, rep["latency_ms"]
    # 20 messages scheduled 20 ms apart on one connection that does 10/s: the last
    # is scheduled at 380 ms and answered at ~2000 ms.
    r, rep = bench(workdir, s.port, "--messages", "20", "--connections", "1", "--rate", "50", "--quiet")
    assert r.returncode == 0, r.stderr
    assert rep["accepted"] == 20
    assert rep["latency_ms"]["message"]["max"] >= 1400, rep["latency_ms"]
    assert rep["elapsed_s"] >= 1.9


@pytest.mark.parametrize("point", ["mail", "rcpt"])
def test_421_mid_pipeline_is_a_temp_failure(workdir, sink, point):
    s = sink("--fault", f"{point}=421:0.2")
    r, rep = bench(workdir, s.port, "--messages", "200", "--connections", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    check_invariants(rep)
    got = s.report()
    assert rep["pipelining"] is True
    assert rep["temp_failed"] == got["faults"][point] > 0, (rep, got)
    assert rep["connection_errors"] == 0, rep["errors"]
    assert rep["accepted"] == got["messages"] == 200 - rep["temp_failed"]
