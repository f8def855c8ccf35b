"""Resource limits: sizes, counts, connections, timeouts."""
import socket
import threading
import time

from conftest import RawSMTP, expect, qid_of, simple_message


def _msg_of_size(n):
    """A message whose content (CRLF line ends, no terminator) is exactly n octets."""
    head = b"From: a@b.test\r\nSubject: size\r\n\r\n"
    lines = []
    remaining = n - len(head)
    assert remaining >= 2
    while remaining > 0:
        take = min(remaining, 78)
        if take < 2:  # cannot leave a lone byte: enlarge previous line
            lines[-1] = b"y" + lines[-1]
            break
        lines.append(b"x" * (take - 2) + b"\r\n")
        remaining -= take
    m = head + b"".join(lines)
    assert len(m) == n, (len(m), n)
    return m


def test_message_size_boundary(ternd_factory):
    t = ternd_factory({"smtp": {"max_message_size": 10000}})
    with t.raw() as c:
        c.envelope()
        qid = qid_of(expect(c.data(_msg_of_size(10000) + b".\r\n"), 250, "2.0.0"))
        c.envelope(ehlo=False)
        expect(c.data(_msg_of_size(10001) + b".\r\n"), 552, "5.3.4")
        # the data was consumed; the session continues
        expect(c.cmd("NOOP"), 250, "2.0.0")
        c.envelope(ehlo=False)
        expect(c.data(simple_message() + b".\r\n"), 250, "2.0.0")
    ids = [e["id"] for e in t.queue()]
    assert qid in ids and len(ids) == 2, ids


def test_message_far_too_big(ternd_factory):
    t = ternd_factory({"smtp": {"max_message_size": 20000}})
    with t.raw(timeout=30) as c:
        c.envelope()
        expect(c.cmd("DATA"), 354)
        line = b"z" * 998 + b"\r\n"
        c.send(b"Subject: big\r\n\r\n" + line * 2000 + b".\r\n")  # ~2 MB
        expect(c.reply(), 552, "5.3.4")
        expect(c.cmd("RSET"), 250, "2.0.0")
    assert t.queue() == []


def test_max_recipients(ternd_factory):
    t = ternd_factory({"smtp": {"max_recipients": 3}})
    with t.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        for i in range(3):
            expect(c.cmd(f"RCPT TO:<r{i}@local.test>"), 250, "2.1.5")
        expect(c.cmd("RCPT TO:<r3@local.test>"), 452, "4.5.3")
        expect(c.cmd("RCPT TO:<r4@local.test>"), 452, "4.5.3")
        qid = qid_of(expect(c.data(simple_message() + b".\r\n"), 250, "2.0.0"))
    env = {e["id"]: e for e in t.queue()}[qid]
    assert sorted(r["address"] for r in env["recipients"]) == ["r0@local.test", "r1@local.test", "r2@local.test"]


def _received_msg(n):
    rec = b"".join(b"Received: from hop%d.test by hop%d.test; Sun, 22 Nov 2026 10:00:00 +0000\r\n" % (i, i + 1)
                   for i in range(n))
    return rec + simple_message()


def test_max_received_headers(ternd_factory):
    t = ternd_factory({"smtp": {"max_received_headers": 5}})
    with t.raw() as c:
        c.envelope()
        expect(c.data(_received_msg(5) + b".\r\n"), 250, "2.0.0")
        c.envelope(ehlo=False)
        expect(c.data(_received_msg(6) + b".\r\n"), 554, "5.4.6")
        expect(c.cmd("NOOP"), 250, "2.0.0")
    assert len(t.queue()) == 1


def test_received_in_body_not_counted(ternd_factory):
    t = ternd_factory({"smtp": {"max_received_headers": 2}})
    body = b"".join(b"Received: quoted in the body %d\r\n" % i for i in range(10))
    with t.raw() as c:
        c.envelope()
        expect(c.data(simple_message(body=body.decode()) + b".\r\n"), 250, "2.0.0")


def test_line_length(ternd):
    with ternd.raw() as c:
        c.envelope()
        ok = b"Subject: l\r\n\r\n" + b"a" * 998 + b"\r\n"
        expect(c.data(ok + b".\r\n"), 250, "2.0.0")
        c.envelope(ehlo=False)
        bad = b"Subject: l\r\n\r\n" + b"a" * 999 + b"\r\n"
        expect(c.data(bad + b".\r\n"), 500, "5.5.2")
        expect(c.cmd("NOOP"), 250, "2.0.0")
    assert len(ternd.queue()) == 1


def test_line_length_configurable(ternd_factory):
    t = ternd_factory({"smtp": {"max_line_length": 2000}})
    with t.raw() as c:
        c.envelope()
        expect(c.data(b"Subject: l\r\n\r\n" + b"a" * 1998 + b"\r\n.\r\n"), 250, "2.0.0")
        c.envelope(ehlo=False)
        expect(c.data(b"Subject: l\r\n\r\n" + b"a" * 1999 + b"\r\n.\r\n"), 500, "5.5.2")


def _connect(port, src="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    c = RawSMTP.__new__(RawSMTP)
    c.sock, c.timeout, c.buf, c.banner = s, 10, b"", None
    return c


def _connect_accepted(port, src="127.0.0.1", timeout=5):
    """Opens a connection that must get a 220 banner; tolerates a short window in
    which the server has not yet released slots of connections closed earlier."""
    deadline = time.monotonic() + timeout
    while True:
        c = _connect(port, src)
        r = c.reply()
        if r.code == 220:
            c.banner = r
            return c
        c.close()
        assert time.monotonic() < deadline, f"connection from {src} refused: {r!r}"
        time.sleep(0.1)


def test_max_connections_per_ip(ternd_factory):
    t = ternd_factory({"smtp": {"max_connections_per_ip": 2}})
    conns = [_connect_accepted(t.port) for _ in range(2)]
    try:
        c3 = _connect(t.port)
        expect(c3.reply(), 421, "4.7.0")
        assert c3.closed()
        c3.close()
        ev = t.wait_event("connection_rejected", client="127.0.0.1")
        assert ev.get("reason"), ev
        # another address is not affected
        other = _connect_accepted(t.port, "127.0.0.2")
        expect(other.ehlo(), 250)
        other.close()
        # the open sessions work
        expect(conns[0].ehlo(), 250)
        # closing one frees a slot
        expect(conns[1].cmd("QUIT"), 221)
        conns[1].close()
        c4 = _connect_accepted(t.port)
        expect(c4.ehlo(), 250)
        conns[1] = c4
    finally:
        for c in conns:
            c.close()


def test_max_connections_total(ternd_factory):
    t = ternd_factory({"smtp": {"max_connections": 3, "max_connections_per_ip": 2}})
    conns = [_connect_accepted(t.port, "127.0.0.1"), _connect_accepted(t.port, "127.0.0.1"),
             _connect_accepted(t.port, "127.0.0.2")]
    try:
        c = _connect(t.port, "127.0.0.3")
        expect(c.reply(), 421, "4.7.0")
        assert c.closed()
        c.close()
        t.wait_event("connection_rejected", client="127.0.0.3")
        expect(conns[2].cmd("QUIT"), 221)
        conns[2].close()
        c = _connect_accepted(t.port, "127.0.0.3")
        conns[2] = c
        expect(c.ehlo(), 250)
    finally:
        for c in conns:
            c.close()


def test_command_timeout(ternd_factory):
    t = ternd_factory({"smtp": {"command_timeout": "1s"}})
    with t.raw() as c:
        expect(c.ehlo(), 250)
        start = time.monotonic()
        r = c.reply(timeout=8)
        elapsed = time.monotonic() - start
        expect(r, 421, "4.4.2")
        assert 0.5 <= elapsed <= 6, elapsed
        assert c.closed()


def test_command_timeout_reset_by_activity(ternd_factory):
    t = ternd_factory({"smtp": {"command_timeout": 2}})
    with t.raw() as c:
        expect(c.ehlo(), 250)
        for _ in range(6):  # 3 s of activity, longer than the timeout
            time.sleep(0.5)
            expect(c.cmd("NOOP"), 250, "2.0.0")
        expect(c.cmd("QUIT"), 221)


def test_data_timeout(ternd_factory):
    t = ternd_factory({"smtp": {"data_timeout": "1s", "command_timeout": "30s"}})
    with t.raw() as c:
        c.envelope()
        expect(c.cmd("DATA"), 354)
        c.send(b"Subject: partial\r\n\r\npartial body\r\n")
        r = c.reply(timeout=8)
        assert r.code == 421, r
        assert c.closed()
    assert t.queue() == []


def _tcp_state(local_port):
    """State (hex string) of our IPv4 socket with this local port, or None."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            lport = int(parts[1].split(":")[1], 16)
            if lport == local_port:
                return parts[3]
    return None


def test_write_timeout(ternd_factory):
    """A client that never reads its replies is dropped after write_timeout."""
    t = ternd_factory({"smtp": {"write_timeout": "1s", "command_timeout": "60s"}})
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", t.port))
    try:
        assert s.recv(512).startswith(b"220")
        lport = s.getsockname()[1]
        chunk = b"NOOP\r\n" * 1000
        s.settimeout(0.5)
        sent = 0
        deadline = time.monotonic() + 15
        while sent < 20_000_000 and time.monotonic() < deadline:
            try:
                s.sendall(chunk)
                sent += len(chunk)
            except (socket.timeout, TimeoutError):
                break  # the server stopped reading: its replies are not being accepted
            except (ConnectionResetError, BrokenPipeError):
                break  # already dropped
        # from now on the client reads nothing; the server must give up within ~write_timeout
        deadline = time.monotonic() + 10
        state = _tcp_state(lport)
        while state == "01" and time.monotonic() < deadline:  # 01 = ESTABLISHED
            time.sleep(0.1)
            state = _tcp_state(lport)
        assert state != "01", f"connection still established 10 s after replies stopped being read (sent {sent} bytes)"
    finally:
        s.close()
    # the daemon is still healthy
    with t.raw() as c:
        expect(c.ehlo(), 250)


def test_size_counts_unstuffed_content(ternd_factory):
    """The limit applies to the message, not to the dot-stuffed transfer form."""
    t = ternd_factory({"smtp": {"max_message_size": 10000}})
    content = _msg_of_size(10000).replace(b"\r\nxx", b"\r\n.x")  # lines starting with a dot
    assert len(content) == 10000
    wire = content.replace(b"\r\n.", b"\r\n..")  # dot-stuffed on the wire
    assert len(wire) > 10100
    with t.raw() as c:
        c.envelope()
        qid = qid_of(expect(c.data(wire + b".\r\n"), 250, "2.0.0"))
    assert t.body_bytes(qid).endswith(b"\r\n" + content)


def test_received_headers_case_insensitive(ternd_factory):
    t = ternd_factory({"smtp": {"max_received_headers": 3}})
    hdrs = b"RECEIVED: from a by b; x\r\nreceived: from b by c; x\r\nReceived:from c by d; x\r\nReCeIvEd: from d by e; x\r\n"
    with t.raw() as c:
        c.envelope()
        expect(c.data(hdrs + simple_message() + b".\r\n"), 554, "5.4.6")


def test_header_line_too_long(ternd):
    with ternd.raw() as c:
        c.envelope()
        expect(c.data(b"Subject: " + b"h" * 1200 + b"\r\n\r\nbody\r\n.\r\n"), 500, "5.5.2")
        expect(c.cmd("NOOP"), 250, "2.0.0")


def test_concurrent_sessions(ternd):
    import threading
    results, errors = [], []

    def worker(n):
        try:
            with ternd.raw(timeout=20) as c:
                expect(c.ehlo(), 250)
                for i in range(5):
                    c.envelope(sender=f"w{n}@b.test", ehlo=False)
                    r = expect(c.data(simple_message(msgid=f"<cc-{n}-{i}@c.test>") + b".\r\n"), 250, "2.0.0")
                    results.append((qid_of(r), f"<cc-{n}-{i}@c.test>"))
                expect(c.cmd("QUIT"), 221)
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(40)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors[:5]
    assert len(results) == 200
    assert len({q for q, _ in results}) == 200, "duplicate queue IDs"
    q = {e["id"]: e for e in ternd.queue()}
    for qid, mid in results:
        assert q[qid]["message_id"] == mid


def test_rejected_connections_do_not_leak_slots(ternd_factory):
    t = ternd_factory({"smtp": {"max_connections_per_ip": 1, "max_connections": 2}})
    first = _connect_accepted(t.port)
    for _ in range(20):
        c = _connect(t.port)
        expect(c.reply(), 421, "4.7.0")
        c.close()
    expect(first.cmd("QUIT"), 221)
    first.close()
    # both the per-IP and the total count are back to zero
    a = _connect_accepted(t.port, "127.0.0.1")
    b = _connect_accepted(t.port, "127.0.0.2")
    for c in (a, b):
        expect(c.ehlo(), 250)
        c.close()


def test_abrupt_disconnects_release_slots(ternd_factory):
    t = ternd_factory({"smtp": {"max_connections_per_ip": 2}})
    for _ in range(5):
        conns = [_connect_accepted(t.port) for _ in range(2)]
        conns[0].send(b"EHLO x\r\nMAIL FROM:<a@b.test>\r\n")
        conns[1].send(b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@local.test>\r\nDATA\r\npartial")
        for c in conns:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            c.close()  # RST
    last = _connect_accepted(t.port)
    expect(last.ehlo(), 250)
    last.close()
    assert t.queue() == []


def test_tls_handshake_timeout(ternd_factory, cert_pair):
    cert, key = cert_pair
    t = ternd_factory({"smtp": {"command_timeout": "1s"},
                       "tls": {"certificate": cert, "private_key": key}})
    with t.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("STARTTLS"), 220, "2.0.0")
        # never start the handshake: the server must not wait for ever
        assert c.closed(timeout=8), "connection still open 8 s after STARTTLS without a handshake"


def test_bdat_timeout(ternd_factory):
    t = ternd_factory({"smtp": {"data_timeout": "1s", "command_timeout": "30s"}})
    with t.raw() as c:
        c.envelope()
        c.send(b"BDAT 100 LAST\r\n0123456789")
        expect(c.reply(timeout=8), 421, "4.4.2")
        assert c.closed()
    assert t.queue() == []


def test_default_max_recipients_pipelined(ternd):
    with ternd.raw(timeout=30) as c:
        expect(c.ehlo(), 250)
        c.send(b"MAIL FROM:<a@b.test>\r\n" + b"".join(b"RCPT TO:<r%d@local.test>\r\n" % i for i in range(1001)))
        expect(c.reply(), 250, "2.1.0")
        for i in range(1000):
            expect(c.reply(), 250, "2.1.5")
        expect(c.reply(), 452, "4.5.3")
        qid = qid_of(expect(c.data(simple_message() + b".\r\n"), 250, "2.0.0"))
    env = {e["id"]: e for e in ternd.queue()}[qid]
    assert len(env["recipients"]) == 1000


def test_bdat_size_across_chunks(ternd_factory):
    t = ternd_factory({"smtp": {"max_message_size": 1000}})
    chunk = b"Subject: x\r\n\r\n" + b"y" * 784 + b"\r\n"
    assert len(chunk) == 800
    with t.raw() as c:
        c.envelope()
        c.send(b"BDAT 800\r\n" + chunk)
        expect(c.reply(), 250, "2.0.0")
        c.send(b"BDAT 800\r\n" + b"z" * 798 + b"\r\n")
        expect(c.reply(), 552, "5.3.4")
        c.send(b"BDAT 10 LAST\r\n" + b"012345678\n"[:8] + b"\r\n")
        expect(c.reply(), 552, "5.3.4")
        # the failed transaction is over: a new one can start
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
    assert t.queue() == []


def test_rset_during_bdat(ternd):
    with ternd.raw() as c:
        c.envelope()
        c.send(b"BDAT 12\r\nSubject: x\r\n")
        expect(c.reply(), 250, "2.0.0")
        expect(c.cmd("RSET"), 250, "2.0.0")
        expect(c.cmd("BDAT 0 LAST"), 503, "5.5.1")
        c.envelope(ehlo=False)
        c.send(b"BDAT 6 LAST\r\nHi\r\n\r\n")
        qid = qid_of(expect(c.reply(), 250, "2.0.0"))
    assert [e["id"] for e in ternd.queue()] == [qid]
    assert ternd.body_bytes(qid).endswith(b"\r\nHi\r\n\r\n")


def test_100000_pipelined_commands(ternd):
    """Each pipelined command that is already buffered completes without
    suspending; that must not nest one more stack frame per command (an
    unoptimised or sanitizer build overflowed its stack at ~3,000)."""
    count = 100_000
    commands = b"NOOP\r\n" * count + b"QUIT\r\n"
    with ternd.raw(timeout=60) as c:
        # The replies (1.5 MB) come back while we are still sending: send
        # from a thread so neither side blocks the other.
        sender = threading.Thread(target=c.sock.sendall, args=(commands,))
        sender.start()
        noop_replies = 0
        for _ in range(count):
            r = c.reply(timeout=60)
            assert r.code == 250, r
            noop_replies += 1
        expect(c.reply(timeout=60), 221)
        sender.join(30)
        assert noop_replies == count
        assert c.closed()
    assert ternd.running()
    # Still serving afterwards.
    with ternd.raw() as c:
        expect(c.cmd("NOOP"), 250)
