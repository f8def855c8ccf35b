"""Shared fixtures for the ternd integration suite.

Every test gets its own ternd process (own free port, own spool, own control
socket, own log) driven only over 127.0.0.1 / ::1 by real clients.

TERN_BUILD is the CMake build directory containing mta/ternd and
tools/ternctl (set by ctest; defaults to <repo>/build for manual runs).
"""
import json
import os
import re
import resource
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("TERN_BUILD") or os.path.join(REPO, "build")
TERND = os.path.join(BUILD, "mta", "ternd")
TERNCTL = os.path.join(BUILD, "tools", "ternctl")
SINK = os.path.join(BUILD, "tools", "tern_sink", "tern-sink")
SINK_TIMEOUT = 10.0

QID_RE = re.compile(r"queued as ([0-9A-Z]{16})\b")
DEFAULT_TIMEOUT = 10.0


def _require(path):
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} not built (TERN_BUILD={BUILD})")


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_until(pred, timeout=DEFAULT_TIMEOUT, interval=0.05, what="condition"):
    """Polls pred() until truthy; returns its value or fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------
# TOML generation
# --------------------------------------------------------------------------

def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table: [retry] first = { count = 2 }
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def to_toml(cfg):
    out = []
    for section, keys in cfg.items():
        out.append(f"[{section}]")
        for k, v in keys.items():
            if v is None:
                continue
            out.append(f"{k} = {_toml_value(v)}")
        out.append("")
    return "\n".join(out)


def deep_merge(base, over):
    for sect, keys in (over or {}).items():
        base.setdefault(sect, {}).update(keys)
    return base


# --------------------------------------------------------------------------
# Self-signed certificate
# --------------------------------------------------------------------------

def make_cert(directory, cn="localhost"):
    cert = os.path.join(directory, f"{cn}.crt")
    key = os.path.join(directory, f"{cn}.key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-subj", f"/CN={cn}", "-days", "1", "-keyout", key, "-out", cert],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    return cert, key


# --------------------------------------------------------------------------
# The daemon
# --------------------------------------------------------------------------

class Ternd:
    """One ternd process with its own directory, config, port and log."""

    def __init__(self, workdir, overrides=None, hostname="mx.test.invalid", open_files=None, hold_fds=0):
        """open_files: (soft, hard) RLIMIT_NOFILE to start ternd with.
        hold_fds: descriptors ternd inherits open (/dev/null), standing for
        files something else in the process holds."""
        self.dir = workdir
        self.hostname = hostname
        self.spool = os.path.join(workdir, "spool")
        self.socket_path = os.path.join(workdir, "ctl.sock")
        self.config_path = os.path.join(workdir, "ternd.toml")
        self.log_path = os.path.join(workdir, "ternd.log")
        self.port = None
        self.proc = None
        self.overrides = overrides or {}
        self.extra_listen = []
        self._logf = None
        self.stopped_by_test = False
        self.open_files = open_files
        self.hold_fds = hold_fds

    # ---- configuration ----
    def config(self, port):
        cfg = {
            "server": {"hostname": self.hostname, "workers": 2, "drain_timeout": "10s"},
            "smtp": {"listen": [f"127.0.0.1:{port}"]},
            "relay": {"local_domains": ["local.test"], "relay_domains": ["relay.test"]},
            "queue": {"directory": self.spool},
            "log": {"format": "kv", "target": "stderr"},
            "control": {"socket": self.socket_path},
            # Receiving tests look at the queue ternd keeps: nothing leaves
            # unless a test turns delivery on (with its own DNS server).
            "delivery": {"enabled": False},
            # Nothing a test does may reach a real DNS server.
            "dns": {"servers": ["127.0.0.1:9"], "timeout": "1s", "tries": 1},
        }
        deep_merge(cfg, self.overrides)
        cfg["smtp"]["listen"] = list(cfg["smtp"]["listen"]) + self.extra_listen
        return cfg

    def write_config(self, port=None, extra=None):
        cfg = self.config(port if port is not None else self.port)
        deep_merge(cfg, extra)
        with open(self.config_path, "w") as f:
            f.write(to_toml(cfg))
        return cfg

    # ---- process ----
    def start(self, timeout=DEFAULT_TIMEOUT, keep_port=False):
        _require(TERND)
        attempts = 1 if keep_port else 3
        last = ""
        self.stopped_by_test = False
        for _ in range(attempts):
            if not keep_port or self.port is None:
                self.port = free_port()
            self.write_config()
            self._logf = open(self.log_path, "ab")
            preexec = None
            if self.open_files:
                soft, hard = self.open_files
                preexec = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            held = [os.open("/dev/null", os.O_RDONLY) for _ in range(self.hold_fds)]
            try:
                if self.open_files:
                    assert all(fd < self.open_files[0] for fd in held), "held descriptors above the limit"
                self.proc = subprocess.Popen(
                    [TERND, "--config", self.config_path], cwd=self.dir,
                    stdin=subprocess.DEVNULL, stdout=self._logf, stderr=self._logf,
                    preexec_fn=preexec, pass_fds=held)
            finally:
                for fd in held:
                    os.close(fd)
            try:
                self.wait_ready(timeout)
                return self
            except AssertionError as e:
                last = str(e)
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait(5)
                self._logf.close()
                if "in use" not in self.log().lower():
                    break  # only a lost race for the port is worth a retry
        raise AssertionError(f"ternd did not start: {last}\n--- log ---\n{self.log()}")

    def wait_ready(self, timeout=DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"ternd exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    s.settimeout(3)
                    data = s.recv(512)
                    if data.startswith(b"220"):
                        try:
                            s.sendall(b"QUIT\r\n")
                            s.recv(512)
                        except OSError:
                            pass
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("ternd not accepting connections in time")

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=DEFAULT_TIMEOUT):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"ternd did not exit within {timeout}s")

    def stop(self, sig=None, timeout=15):
        self.stopped_by_test = True
        return self._stop(sig, timeout)

    def _stop(self, sig=None, timeout=15):
        sig = sig or signal.SIGTERM
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._logf:
            self._logf.close()
            self._logf = None
        return self.proc.returncode

    def kill(self):
        self.stopped_by_test = True
        self.proc.kill()
        self.proc.wait(10)
        if self._logf:
            self._logf.close()
            self._logf = None

    # ---- log ----
    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n):
        """The last n bytes of the log, without reading all of it (a daemon
        that logs in a loop writes gigabytes)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - n))
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def events(self, code=None):
        """Parsed kv log lines: list of dicts (with 'event' key)."""
        out = []
        for line in self.log().splitlines():
            ev = parse_kv(line)
            if ev and (code is None or ev.get("event") == code):
                out.append(ev)
        return out

    def wait_event(self, event_name, timeout=DEFAULT_TIMEOUT, **match):
        code = event_name

        def find():
            for ev in self.events(code):
                if all(ev.get(k) == v for k, v in match.items()):
                    return ev
            return None
        return wait_until(find, timeout, what=f"log event={code} {match}\n--- log ---\n{self.log_tail(3000)}")

    # ---- clients ----
    def raw(self, timeout=DEFAULT_TIMEOUT, banner=True, host="127.0.0.1"):
        c = RawSMTP(host, self.port, timeout)
        if banner:
            c.banner = c.reply()
        return c

    def ternctl(self, *args, timeout=30, socket_path=None):
        _require(TERNCTL)
        return subprocess.run([TERNCTL, "--socket", socket_path or self.socket_path, *args],
                              capture_output=True, text=True, timeout=timeout)

    def queue(self):
        r = self.ternctl("queue", "--json")
        assert r.returncode == 0, f"ternctl queue --json failed: {r.returncode} {r.stderr}"
        return json.loads(r.stdout)

    def body(self, qid):
        r = self.ternctl("show", qid, "--body")
        assert r.returncode == 0, f"ternctl show {qid} --body: rc={r.returncode} {r.stderr}"
        return r.stdout

    def body_bytes(self, qid):
        """The stored message (our Received: header + the message as received).
        `show --body` may print the envelope lines and a blank line first."""
        _require(TERNCTL)
        r = subprocess.run([TERNCTL, "--socket", self.socket_path, "show", qid, "--body"],
                           capture_output=True, timeout=30)
        assert r.returncode == 0, f"ternctl show {qid} --body: rc={r.returncode} {r.stderr!r}"
        out = r.stdout
        if not out.startswith(b"Received:"):
            env, sep, msg = out.partition(b"\n\n")
            assert sep and msg.startswith(b"Received:"), f"unexpected show --body output: {out[:300]!r}"
            out = msg
        return out


def check_config(workdir, text):
    """`ternd --check-config` on a file with `text`."""
    _require(TERND)
    path = os.path.join(workdir, "c.toml")
    with open(path, "w") as f:
        f.write(text)
    return subprocess.run([TERND, "--check-config", path], capture_output=True, text=True, timeout=30)


def error_lines(r):
    """The non-empty lines a --check-config run wrote to stderr."""
    return [l for l in r.stderr.splitlines() if l.strip()]


def parse_kv(line):
    """Parses `<time> event=code k=v k="quoted \\" v"` into a dict."""
    m = re.match(r"^(\S+)\s+event=", line)
    if not m:
        return None
    d = {"time": m.group(1)}
    pos = m.end() - len("event=")
    pat = re.compile(r'\s*([A-Za-z0-9_.\-]+)=("(?:[^"\\]|\\.)*"|\S*)')
    while pos < len(line):
        mm = pat.match(line, pos)
        if not mm:
            break
        k, v = mm.group(1), mm.group(2)
        if v.startswith('"'):
            v = re.sub(r'\\(.)', r'\1', v[1:-1])
        d[k] = v
        pos = mm.end()
    return d


# --------------------------------------------------------------------------
# A raw SMTP client over a plain socket (optionally upgraded to TLS)
# --------------------------------------------------------------------------

class Reply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines  # text after "NNN-" / "NNN "

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def enhanced(self):
        m = re.match(r"^([245]\.\d{1,3}\.\d{1,3})\b", self.lines[0] if self.lines else "")
        return m.group(1) if m else None

    def __repr__(self):
        return f"Reply({self.code}, {self.lines!r})"


class RawSMTP:
    def __init__(self, host, port, timeout=DEFAULT_TIMEOUT):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.timeout = timeout
        self.buf = b""
        self.banner = None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _readline(self, deadline):
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete reply line; have {self.buf!r}")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; pending {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        lines = []
        while True:
            line = self._readline(deadline)
            assert re.match(r"^\d{3}[ -]", line) or re.match(r"^\d{3}$", line), f"bad reply line {line!r}"
            lines.append(line[4:])
            if len(line) == 3 or line[3] == " ":
                return Reply(int(line[:3]), lines)

    def cmd(self, line, timeout=None):
        self.send(line + "\r\n")
        return self.reply(timeout)

    def closed(self, timeout=5.0):
        """True when the server closes the connection (EOF or reset) within timeout,
        with no further data pending."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True
            self.buf += chunk
        return False

    def starttls(self, context=None):
        r = self.cmd("STARTTLS")
        if r.code != 220:
            return r
        ctx = context or client_tls_context()
        self.sock.settimeout(self.timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        return r

    # conveniences
    def ehlo(self, name="client.test"):
        return self.cmd(f"EHLO {name}")

    def envelope(self, sender="a@b.test", rcpts=("x@local.test",), ehlo=True):
        if ehlo:
            expect(self.ehlo(), 250)
        expect(self.cmd(f"MAIL FROM:<{sender}>"), 250, "2.1.0")
        for r in rcpts:
            expect(self.cmd(f"RCPT TO:<{r}>"), 250, "2.1.5")

    def data(self, body_bytes):
        """Sends DATA, then the given already-dot-stuffed body INCLUDING the
        terminating CRLF.CRLF; returns the final reply."""
        expect(self.cmd("DATA"), 354)
        self.send(body_bytes)
        return self.reply()


def server_rx_queue(server_port, client_port):
    """Bytes received by the kernel for the server side of our IPv4 loopback
    connection but not yet read by the daemon (None if not found)."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            lport = int(parts[1].split(":")[1], 16)
            rport = int(parts[2].split(":")[1], 16)
            if lport == server_port and rport == client_port:
                return int(parts[4].split(":")[1], 16)
    return None


def client_tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def expect(reply, code, enhanced=None):
    assert reply.code == code, f"expected {code} {enhanced or ''}, got {reply!r}"
    if enhanced is not None:
        assert reply.enhanced == enhanced, f"expected enhanced {enhanced}, got {reply!r}"
    return reply


def qid_of(reply):
    m = QID_RE.search(reply.text)
    assert m, f"no 'queued as <QID>' in {reply!r}"
    return m.group(1)


def notify_set(n):
    """Normalises a JSON notify value (bit set, list or comma string) to a set of names."""
    if isinstance(n, int):
        names = {1: "NEVER", 2: "SUCCESS", 4: "FAILURE", 8: "DELAY"}
        return {v for b, v in names.items() if n & b}
    if isinstance(n, str):
        return {x.strip().upper() for x in n.split(",") if x.strip()}
    return {str(x).upper() for x in (n or [])}


def simple_message(subject="test", body="Hello.\r\n", msgid=None, extra_headers=""):
    msgid = msgid or f"<{time.time_ns()}.{os.getpid()}@client.test>"
    return (f"From: a@b.test\r\nTo: x@local.test\r\nSubject: {subject}\r\n"
            f"Message-ID: {msgid}\r\n{extra_headers}\r\n{body}").encode()


def send_simple(ternd, body=None, sender="a@b.test", rcpts=("x@local.test",)):
    """One complete transaction over a raw connection; returns the QID."""
    with ternd.raw() as c:
        c.envelope(sender, rcpts)
        msg = body if body is not None else simple_message()
        r = expect(c.data(msg + b".\r\n"), 250, "2.0.0")
        qid = qid_of(r)
        expect(c.cmd("QUIT"), 221)
        return qid


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------

@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def workdir(request):
    # Short path: the control socket must fit in sun_path (108 bytes).
    d = tempfile.mkdtemp(prefix="tern-it-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


class TerndFactory:
    def __init__(self, workdir):
        self.workdir = workdir
        self.instances = []

    def __call__(self, overrides=None, start=True, **kw):
        sub = os.path.join(self.workdir, f"d{len(self.instances)}")
        os.makedirs(sub)
        t = Ternd(sub, overrides, **kw)
        self.instances.append(t)
        if start:
            t.start()
        return t


@pytest.fixture
def ternd_factory(workdir, request):
    f = TerndFactory(workdir)
    yield f
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    crashed = []
    for t in f.instances:
        rc = t._stop()
        if not t.stopped_by_test and rc not in (0, None):
            crashed.append(f"ternd in {t.dir} exited with {rc} without the test asking")
        log = t.log()
        if "Sanitizer" in log or "runtime error:" in log:  # a sanitizer build reports here
            crashed.append(f"ternd in {t.dir}: sanitizer report in its log")
        if failed or crashed:
            print(f"\n--- ternd log ({t.dir}) ---\n{t.log_tail(6000)}")
    if crashed:
        pytest.fail("; ".join(crashed))


@pytest.fixture
def ternd(ternd_factory):
    """A running ternd with default test configuration."""
    return ternd_factory()


@pytest.fixture(scope="session")
def cert_pair():
    d = tempfile.mkdtemp(prefix="tern-cert-", dir="/tmp")
    try:
        yield make_cert(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------
# tern-sink, the receiving server of the load-test kit
# --------------------------------------------------------------------------

class Sink:
    """One tern-sink process on free loopback port(s), with its JSON report."""

    def __init__(self, workdir, args=(), threads=2, listen=None):
        self.dir = workdir
        self.args = list(args)
        self.threads = threads
        self.listen = listen
        self.json_path = os.path.join(workdir, "sink.json")
        self.out_path = os.path.join(workdir, "sink.out")
        self.err_path = os.path.join(workdir, "sink.err")
        self.proc = None
        self.port = None

    def start(self):
        assert os.access(SINK, os.X_OK), f"{SINK} not built (TERN_BUILD={BUILD})"
        for _ in range(3):
            self.port = free_port()
            listen = self.listen(self.port) if self.listen else [f"127.0.0.1:{self.port}"]
            argv = [SINK, "--threads", str(self.threads), "--json", self.json_path, *self.args]
            for l in listen:
                argv += ["--listen", l]
            with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            try:
                wait_until(lambda: self.proc.poll() is not None or self.output().count("listening on") == len(listen),
                           SINK_TIMEOUT, what="tern-sink to listen")
            except AssertionError:
                self.proc.kill()
                raise
            if self.proc.poll() is None:
                return self
            if "in use" not in self.errors():
                break
        raise AssertionError(f"tern-sink did not start: rc={self.proc.returncode}\n{self.errors()}")

    def output(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def errors(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def report(self):
        """SIGUSR1, then the JSON it rewrites (written by rename: complete once it exists)."""
        if os.path.exists(self.json_path):
            os.unlink(self.json_path)
        self.proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: os.path.exists(self.json_path), SINK_TIMEOUT, what="the JSON report")
        with open(self.json_path) as f:
            return json.load(f)

    def stop(self):
        """SIGTERM; returns (exit code, stdout)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(SINK_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError("tern-sink did not exit on SIGTERM")
        return self.proc.returncode, self.output()

    def raw(self, banner=True, host="127.0.0.1"):
        c = RawSMTP(host, self.port, SINK_TIMEOUT)
        if banner:
            c.banner = c.reply()
        return c

    def smtp(self):
        return smtplib.SMTP("127.0.0.1", self.port, timeout=SINK_TIMEOUT)


@pytest.fixture
def sink_factory(workdir):
    sinks = []

    def make(*args, **kw):
        d = os.path.join(workdir, f"s{len(sinks)}")
        os.makedirs(d)
        s = Sink(d, args, **kw)
        sinks.append(s)
        return s.start()

    yield make
    for s in sinks:
        s.stop()
    for s in sinks:  # a sanitizer build reports here
        assert "Sanitizer" not in s.errors() and "runtime error:" not in s.errors(), s.errors()


# ---- delivery: DNS on loopback, sinks on 127.0.0.x, a delivering ternd ----

DNSMASQ = "/usr/sbin/dnsmasq"


class Dnsmasq:
    """dnsmasq in the foreground on 127.0.0.1:PORT, answering only from its
    command line: unknown .test names are NXDOMAIN, nothing is forwarded
    unless a record says so."""

    def __init__(self, records):
        assert os.access(DNSMASQ, os.X_OK), f"{DNSMASQ} missing (Debian package dnsmasq-base)"
        for _ in range(3):
            self.port = free_port()
            self.proc = subprocess.Popen(
                [DNSMASQ, "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
                 "--pid-file", "--log-facility=-", f"--port={self.port}", "--listen-address=127.0.0.1",
                 "--bind-interfaces", "--local-ttl=1", "--local=/test/", *records],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                wait_until(lambda: self.proc.poll() is not None or self._answers(), 5, what="dnsmasq")
            except AssertionError:
                self.stop()
                raise
            if self.proc.poll() is None:
                return
        raise AssertionError(f"dnsmasq did not start: {self.proc.stderr.read().decode(errors='replace')}")

    def _answers(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.5):
                return True
        except OSError:
            return False

    @property
    def server(self):
        return f"127.0.0.1:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


class ServfailServer:
    """Answers every UDP query with SERVFAIL (what a broken authoritative
    server looks like through a resolver)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.running:
            try:
                data, peer = self.sock.recvfrom(1500)
            except OSError:
                continue
            if len(data) < 12:
                continue
            self.queries += 1
            reply = bytearray(data)
            reply[2] |= 0x80
            reply[3] = 0x80 | 2
            self.sock.sendto(bytes(reply), peer)

    def stop(self):
        self.running = False
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def dns_factory():
    servers = []

    def make(*records):
        d = Dnsmasq(records)
        servers.append(d)
        return d
    yield make
    for d in servers:
        d.stop()


@pytest.fixture
def servfail():
    s = ServfailServer()
    yield s
    s.stop()


def sink_on(sink_factory, ip, port, *args):
    """A tern-sink on ip:port (the MX port every test host shares)."""
    return sink_factory(*args, listen=lambda _free: [f"{ip}:{port}"])


def delivering_ternd(ternd_factory, dns_server, smtp_port, **sections):
    cfg = {
        "delivery": {"enabled": True, "smtp_port": smtp_port, "scan_interval": "200ms",
                     "connect_timeout": "2s", "command_timeout": "5s", "connection_cache_time": "1s"},
        "dns": {"servers": [dns_server.server], "timeout": "1s", "tries": 1},
        "retry": {"jitter": 0},
    }
    for key, value in sections.items():
        cfg.setdefault(key, {}).update(value)
    return ternd_factory(cfg)


def active_messages(ternd):
    """The delivery engine's active set now (ternctl stats)."""
    r = ternd.ternctl("stats")
    assert r.returncode == 0, r.stderr
    return int(dict(line.split() for line in r.stdout.splitlines())["active_messages"])


def send(ternd, rcpts, sender="alice@example.test", body="Subject: t\r\n\r\nhello\r\n.dot line\r\n"):
    with smtplib.SMTP("127.0.0.1", ternd.port, timeout=10) as c:
        c.sendmail(sender, list(rcpts), body.encode())


def hold_backlog(ternd, domain, rcpts):
    """Holds `domain` and queues one message to each of `rcpts` (all in that
    domain); returns once every one of them waits in the hold queue, so a
    release-domain hands the engine a backlog at once."""
    assert ternd.ternctl("hold-domain", domain).returncode == 0
    for rcpt in rcpts:
        send(ternd, [rcpt])
    wait_until(lambda: len(q := ternd.queue()) == len(rcpts) and all(m["queue"] == "hold" for m in q), 10,
               what=f"{len(rcpts)} messages held")


def send_concurrently(port, messages, connections):
    """Sends `messages`, (sender, rcpts, body) each, over `connections` SMTP
    connections at once (message i on connection i % connections); asserts
    that every one was accepted and returns them in the order acknowledged."""
    acked, errors = [], []

    def sender(first):
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
                for m in messages[first::connections]:
                    c.sendmail(*m)
                    acked.append(m)
        except (smtplib.SMTPException, OSError) as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:5]
    return acked


def wait_messages(sink, n, timeout=20):
    return wait_until(lambda: (r := sink.report())["messages"] >= n and r, timeout, what=f"{n} messages at the sink")
