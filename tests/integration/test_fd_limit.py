"""Open-file limits: ternd fits its connection limits into RLIMIT_NOFILE at
start, and when descriptors run out anyway it pauses accepting instead of
retrying at once (issue 13 item 3: 100 % CPU and millions of accept_error
lines in ten seconds with `ulimit -n 1024`).

ternd is started with soft = hard, so raising the soft limit cannot help.
"""
import os
import re
import signal
import socket
import subprocess
import time

from conftest import TERNCTL, RawSMTP, expect, wait_until

LIMIT = 256
# Twelve client addresses, each well under the per-IP limit (100).
SOURCES = [f"127.0.0.{i}" for i in range(2, 14)]
# How long the descriptors stay exhausted while CPU time and log lines are counted.
WINDOW = 4.0


def _cpu_seconds(pid):
    """utime + stime of the whole process (every thread), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _AcceptLines:
    """Counts log lines about failed or paused accepts as the log grows,
    reading each byte once (a spinning accept loop writes gigabytes)."""

    MARKS = (b" event=accept_error ", b" event=accept_paused ")

    def __init__(self, t):
        self.path, self.offset, self.count, self.rest = t.log_path, 0, 0, b""

    def update(self):
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            while chunk := f.read(1 << 22):
                self.offset += len(chunk)
                data = self.rest + chunk
                cut = data.rfind(b"\n") + 1  # whole lines only: a mark may straddle chunks
                self.count += sum(data.count(m, 0, cut) for m in self.MARKS)
                self.rest = data[cut:]
        return self.count


def _open(port, per_source):
    """per_source connections from each of SOURCES; connect() completes in the
    kernel's backlog whether or not ternd accepts them."""
    socks = []
    for src in SOURCES:
        for _ in range(per_source):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(5)
            s.bind((src, 0))
            s.connect(("127.0.0.1", port))
            socks.append(s)
    return socks


def _first_reply(s):
    """The first reply line's code, or None when the server says nothing."""
    s.settimeout(5)
    buf = b""
    try:
        while b"\n" not in buf:
            chunk = s.recv(512)
            if not chunk:
                break
            buf += chunk
    except OSError:
        return None
    return int(buf[:3]) if buf[:3].isdigit() else None


def _lowered(ev, key):
    m = re.search(re.escape(key) + r" (\d+)->(\d+)", ev.get("lowered", ""))
    return (int(m.group(1)), int(m.group(2))) if m else None


def test_descriptors_running_out_pause_accepting(ternd_factory):
    # 200 descriptors ternd did not open itself (a leak, RocksDB compacting,
    # anything the start-up budget did not count) leave room for a few dozen
    # connections: the 240 below exhaust the table whatever the budget said.
    t = ternd_factory(open_files=(LIMIT, LIMIT), hold_fds=200)
    socks = _open(t.port, 20)
    try:
        counter = _AcceptLines(t)
        wait_until(lambda: counter.update() > 0, what="an accept failing")
        # The control socket is out of descriptors too: ternctl waits.
        ctl = subprocess.Popen([TERNCTL, "--socket", t.socket_path, "stats"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        cpu0, lines0 = _cpu_seconds(t.proc.pid), counter.update()
        time.sleep(WINDOW)
        cpu, lines = _cpu_seconds(t.proc.pid) - cpu0, counter.update() - lines0
        print(f"\nexhausted for {WINDOW}s: cpu {cpu:.2f}s, accept lines {lines} in the window, {counter.count} in all")
        assert cpu < 0.5, f"accept loop spins: {cpu:.2f}s CPU in {WINDOW}s, {lines} accept lines"
        # One accept_paused per listener (two workers, the control socket)
        # per episode, not one per attempt.
        assert counter.count <= 8, f"{counter.count} accept log lines"
        paused = t.events("accept_paused")
        assert all(ev["error"] == "EMFILE" for ev in paused), paused
        assert [ev for ev in paused if ev["listener"] == "control"], paused
        workers = [ev for ev in paused if ev["listener"] == "mta"]
        assert workers and all(int(ev["connections"]) > 0 for ev in workers), paused
    finally:
        for s in socks:
            s.close()
    # Descriptors come back: accepting resumes within the longest pause and
    # drains the backlog's closed connections; ternctl gets its answer.
    out, err = ctl.communicate(timeout=15)
    assert ctl.returncode == 0 and "connections" in out, (ctl.returncode, out, err)
    deadline = time.monotonic() + 10
    while True:
        c = RawSMTP("127.0.0.1", t.port, 5)
        r = c.reply()
        if r.code == 220:
            break
        c.close()
        assert time.monotonic() < deadline, f"no session after the shortage: {r!r}"
        time.sleep(0.2)
    with c:
        expect(c.cmd("EHLO client.test"), 250)
        expect(c.cmd("QUIT"), 221)
    # An episode ends with an accept a quiet second after the last pause
    # (each worker drains its part of the backlog at its own pace).
    def both_resumed():
        with t.raw() as c:
            expect(c.cmd("QUIT"), 221)
        assert t.ternctl("stats").returncode == 0
        return {"mta", "control"} <= {ev["listener"] for ev in t.events("accept_resumed")}
    wait_until(both_resumed, interval=0.3, what="accept_resumed for a worker and the control socket")
    resumed = t.events("accept_resumed")
    assert all(int(ev["pauses"]) >= 1 for ev in resumed), resumed
    assert len(t.events("accept_paused")) <= 8, t.events("accept_paused")


def test_limits_that_do_not_fit_are_lowered(ternd_factory):
    t = ternd_factory(open_files=(LIMIT, LIMIT))
    ev = t.wait_event("fd_limit")
    assert ev["soft"] == str(LIMIT) and ev["hard"] == str(LIMIT), ev
    assert ev["status"] == "lowered", ev
    assert int(ev["needed"]) > 20_000, ev
    before, smtp_limit = _lowered(ev, "smtp.max_connections")
    assert before == 20_000 and 0 < smtp_limit < LIMIT, ev
    # More connections than the lowered limit: the excess is refused with
    # 421, every one is answered and no accept fails.
    socks = _open(t.port, 10)
    try:
        codes = [_first_reply(s) for s in socks]
    finally:
        for s in socks:
            s.close()
    assert None not in codes, f"{codes.count(None)} connections got no reply"
    assert codes.count(220) <= smtp_limit, codes
    assert codes.count(421) >= len(socks) - smtp_limit, codes
    assert t.events("accept_paused") == [] and t.events("accept_error") == []

    # A reload cannot bring back what does not fit.
    t.write_config(extra={"smtp": {"max_connections": 30_000}})
    t.signal(signal.SIGHUP)
    t.wait_event("reload", status="ok")
    wait_until(lambda: len(t.events("fd_limit")) == 2, what="fd_limit at reload")
    again = t.events("fd_limit")[1]
    assert _lowered(again, "smtp.max_connections") == (30_000, smtp_limit), again


def test_soft_limit_raised_to_hard(ternd_factory):
    t = ternd_factory({"smtp": {"max_connections": 1_000}}, open_files=(LIMIT, 4096))
    ev = t.wait_event("fd_limit")
    assert ev["soft"] == "4096" and ev["hard"] == "4096", ev
    assert ev["status"] == "ok" and "lowered" not in ev, ev
    with open(f"/proc/{t.proc.pid}/limits") as f:
        line = next(l for l in f if l.startswith("Max open files"))
    assert line.split()[3:5] == ["4096", "4096"], line
