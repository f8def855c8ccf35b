"""Message content: DATA (dot-stuffing, line endings, smuggling), BDAT, 8BITMIME,
SMTPUTF8 and the stored form (our Received: header + the message as received)."""
import re

import pytest

from conftest import expect, qid_of, send_simple, server_rx_queue, simple_message, wait_until


def split_received(stored):
    """Splits a stored message into (our Received: header, rest)."""
    assert stored.startswith(b"Received:"), stored[:200]
    lines = stored.split(b"\r\n")
    n = 1
    while n < len(lines) and lines[n][:1] in (b" ", b"\t"):
        n += 1
    hdr = b"\r\n".join(lines[:n]) + b"\r\n"
    return hdr, stored[len(hdr):]


def stored_message(ternd, qid):
    return split_received(ternd.body_bytes(qid))


# ---------------------------------------------------------------- DATA

def test_body_stored_verbatim(ternd):
    msg = simple_message(body="line one\r\n\r\n  indented\r\n\ttab\r\nlast\r\n")
    with ternd.raw() as c:
        c.envelope()
        qid = qid_of(expect(c.data(msg + b".\r\n"), 250, "2.0.0"))
    rec, rest = stored_message(ternd, qid)
    assert rest == msg
    assert b"id " + qid.encode() in rec, rec
    # RFC 5321 4.4: ends with "; date-time", lines within 998 octets
    import email.utils
    import time as _t
    when = email.utils.parsedate_to_datetime(rec.rsplit(b";", 1)[1].strip().decode())
    assert abs(when.timestamp() - _t.time()) < 300, when
    assert all(len(l) <= 998 for l in rec.split(b"\r\n"))
    assert re.match(rb"Received: from client\.test\b", rec), rec
    assert re.search(rb"\bwith ESMTP\b", rec), rec
    assert ternd.hostname.encode() in rec, rec


def test_received_with_smtp_after_helo(ternd):
    with ternd.raw() as c:
        expect(c.cmd("HELO helo.client.test"), 250)
        c.envelope(ehlo=False)
        qid = qid_of(expect(c.data(simple_message() + b".\r\n"), 250, "2.0.0"))
    rec, _ = stored_message(ternd, qid)
    assert re.search(rb"\bwith SMTP\b", rec), rec
    assert b"helo.client.test" in rec, rec
    assert b"127.0.0.1" in rec, rec


def test_dot_stuffing(ternd):
    sent = (b"Subject: dots\r\n\r\n"
            b"..x\r\n"
            b"...\r\n"
            b"..\r\n"
            b"a.b\r\n"
            b". leading dot space\r\n"
            b"end\r\n")
    want = (b"Subject: dots\r\n\r\n"
            b".x\r\n"
            b"..\r\n"
            b".\r\n"
            b"a.b\r\n"
            b" leading dot space\r\n"
            b"end\r\n")
    with ternd.raw() as c:
        c.envelope()
        qid = qid_of(expect(c.data(sent + b".\r\n"), 250, "2.0.0"))
    _, rest = stored_message(ternd, qid)
    assert rest == want


def test_empty_message(ternd):
    with ternd.raw() as c:
        c.envelope()
        qid = qid_of(expect(c.data(b".\r\n"), 250, "2.0.0"))
    _, rest = stored_message(ternd, qid)
    assert rest == b""


@pytest.mark.parametrize("bad", [
    b"Subject: x\r\n\r\nbare\nlf\r\n",
    b"Subject: x\r\n\r\nbare\rcr\r\n",
    b"Subject: x\nTo: y@local.test\r\n\r\nbody\r\n",
    b"Subject: x\r\n\r\nbare lf then crlf\n\r\n",
])
def test_bare_lf_cr_rejected(ternd, bad):
    with ternd.raw() as c:
        c.envelope()
        expect(c.data(bad + b".\r\n"), 550, "5.6.0")
        # the session continues and is in sync
        expect(c.cmd("NOOP"), 250, "2.0.0")
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
    assert ternd.queue() == []
    ternd.wait_event("rejected", code="550")


def test_bare_lf_allowed_is_normalised(ternd_factory):
    t = ternd_factory({"smtp": {"allow_bare_lf": True}})
    with t.raw() as c:
        c.envelope()
        sent = b"Subject: x\nX-H: y\r\n\nbare\nlf\rcr\r\nok\r\n"
        qid = qid_of(expect(c.data(sent + b".\r\n"), 250, "2.0.0"))
    _, rest = stored_message(t, qid)
    assert rest == b"Subject: x\r\nX-H: y\r\n\r\nbare\r\nlf\r\ncr\r\nok\r\n"


# Sequences that some MTAs take as end of data (SMTP smuggling). None of them
# may end the data; the text after them must be part of the one message.
SMUGGLE = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r", b"\r.\r", b"\n.\r"]


def _smuggle_payload(seq):
    return (b"Subject: smuggle\r\n\r\nfirst part" + seq +
            b"HELP\r\nMAIL FROM:<evil@b.test>\r\nRCPT TO:<victim@local.test>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nsmuggled\r\n")


@pytest.mark.parametrize("seq", SMUGGLE, ids=[repr(s) for s in SMUGGLE])
def test_smuggling_rejected_by_default(ternd, seq):
    with ternd.raw() as c:
        c.envelope()
        expect(c.cmd("DATA"), 354)
        c.send(_smuggle_payload(seq) + b".\r\n")
        expect(c.reply(), 550, "5.6.0")
        # nothing of the payload was taken as commands (HELP would give 214)
        r = c.cmd("VRFY someone")
        expect(r, 252, "2.5.0")
        expect(c.cmd("QUIT"), 221)
    assert ternd.queue() == []


@pytest.mark.parametrize("seq", SMUGGLE, ids=[repr(s) for s in SMUGGLE])
def test_smuggling_not_end_of_data_when_bare_lf_allowed(ternd_factory, seq):
    t = ternd_factory({"smtp": {"allow_bare_lf": True}})
    with t.raw() as c:
        c.envelope()
        expect(c.cmd("DATA"), 354)
        c.send(_smuggle_payload(seq) + b".\r\n")
        qid = qid_of(expect(c.reply(), 250, "2.0.0"))
        expect(c.cmd("VRFY someone"), 252, "2.5.0")
        expect(c.cmd("QUIT"), 221)
    q = t.queue()
    assert [e["id"] for e in q] == [qid], q
    assert q[0]["sender"] == "a@b.test"
    _, rest = stored_message(t, qid)
    assert b"MAIL FROM:<evil@b.test>\r\n" in rest
    assert rest.endswith(b"smuggled\r\n")
    bare = rest.replace(b"\r\n", b"")
    assert b"\r" not in bare and b"\n" not in bare, rest


def test_8bitmime(ternd):
    body = "Grüße aus Köln — naïve café\r\n".encode("utf-8") + bytes(range(0x80, 0x100)).replace(b"\r", b"").replace(b"\n", b"") + b"\r\n"
    msg = b"Subject: 8bit\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test> BODY=8BITMIME"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<x@local.test>"), 250, "2.1.5")
        qid = qid_of(expect(c.data(msg + b".\r\n"), 250, "2.0.0"))
    _, rest = stored_message(ternd, qid)
    assert rest == msg
    env = {e["id"]: e for e in ternd.queue()}[qid]
    assert str(env["body"]).upper() == "8BITMIME"


def test_smtputf8_message_stored(ternd):
    msg = "From: jürgen@b.test\r\nTo: müller@local.test\r\nSubject: grüße\r\n\r\nÄÖÜ\r\n".encode()
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<jürgen@b.test> SMTPUTF8 BODY=8BITMIME"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<müller@local.test>"), 250, "2.1.5")
        qid = qid_of(expect(c.data(msg + b".\r\n"), 250, "2.0.0"))
    _, rest = stored_message(ternd, qid)
    assert rest == msg
    env = {e["id"]: e for e in ternd.queue()}[qid]
    assert env["smtputf8"] is True


def test_received_protocol_smtputf8(ternd):
    """RFC 6531 3.7.3: the Received: "with" clause is UTF8SMTP for SMTPUTF8 transactions."""
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<jürgen@b.test> SMTPUTF8"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<x@local.test>"), 250, "2.1.5")
        qid = qid_of(expect(c.data(simple_message() + b".\r\n"), 250, "2.0.0"))
    rec, _ = stored_message(ternd, qid)
    assert re.search(rb"\bwith UTF8SMTP\b", rec), rec


def test_message_id_recorded(ternd):
    with ternd.raw() as c:
        c.envelope()
        qid = qid_of(expect(c.data(simple_message(msgid="<mid-42@client.test>") + b".\r\n"), 250, "2.0.0"))
    env = {e["id"]: e for e in ternd.queue()}[qid]
    assert env["message_id"].strip("<>") == "mid-42@client.test"
    ev = ternd.wait_event("received", qid=qid)
    assert ev["message_id"].strip("<>") == "mid-42@client.test"


def test_folded_message_id(ternd):
    msg = b"Subject: folded\r\nMessage-ID:\r\n  <folded-1@client.test>\r\n\r\nbody\r\n"
    with ternd.raw() as c:
        c.envelope()
        qid = qid_of(expect(c.data(msg + b".\r\n"), 250, "2.0.0"))
    env = {e["id"]: e for e in ternd.queue()}[qid]
    assert env["message_id"] == "<folded-1@client.test>"


def test_message_id_in_body_ignored(ternd):
    msg = b"Subject: none\r\n\r\nMessage-ID: <in-body@client.test>\r\n"
    with ternd.raw() as c:
        c.envelope()
        qid = qid_of(expect(c.data(msg + b".\r\n"), 250, "2.0.0"))
    env = {e["id"]: e for e in ternd.queue()}[qid]
    assert env["message_id"] == ""


# ---------------------------------------------------------------- BDAT

def test_bdat_chunks(ternd):
    part1 = b"Subject: bdat\r\nMessage-ID: <bdat1@client.test>\r\n\r\n..not unstuffed\r\n"
    part2 = b"second chunk\r\n.\r\nstill data\r\n"
    with ternd.raw() as c:
        c.envelope()
        c.send(b"BDAT %d\r\n" % len(part1) + part1)
        expect(c.reply(), 250, "2.0.0")
        c.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
        r = expect(c.reply(), 250, "2.0.0")
        qid = qid_of(r)
        expect(c.cmd("NOOP"), 250, "2.0.0")
    _, rest = stored_message(ternd, qid)
    assert rest == part1 + part2


def test_bdat_zero_last(ternd):
    part = b"Subject: bdat0\r\n\r\nbody\r\n"
    with ternd.raw() as c:
        c.envelope()
        c.send(b"BDAT %d\r\n" % len(part) + part)
        expect(c.reply(), 250, "2.0.0")
        qid = qid_of(expect(c.cmd("BDAT 0 LAST"), 250, "2.0.0"))
    _, rest = stored_message(ternd, qid)
    assert rest == part


def test_bdat_chunk_boundary_inside_crlf(ternd):
    a = b"Subject: split\r\n\r\nline one\r"
    b = b"\nline two\r\n"
    with ternd.raw() as c:
        c.envelope()
        c.send(b"BDAT %d\r\n" % len(a) + a)
        expect(c.reply(), 250, "2.0.0")
        c.send(b"BDAT %d LAST\r\n" % len(b) + b)
        qid = qid_of(expect(c.reply(), 250, "2.0.0"))
    _, rest = stored_message(ternd, qid)
    assert rest == a + b


def test_bdat_pipelined(ternd):
    chunks = [b"Subject: pipelined bdat\r\n\r\n", b"chunk two\r\n", b"chunk three\r\n"]
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        data = b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@local.test>\r\nRCPT TO:<y@local.test>\r\n"
        for i, ch in enumerate(chunks):
            last = b" LAST" if i == len(chunks) - 1 else b""
            data += b"BDAT %d%s\r\n" % (len(ch), last) + ch
        data += b"MAIL FROM:<b@b.test>\r\nRCPT TO:<z@local.test>\r\nBDAT 6 LAST\r\nHi\r\n\r\nQUIT\r\n"
        c.send(data)
        expect(c.reply(), 250, "2.1.0")
        expect(c.reply(), 250, "2.1.5")
        expect(c.reply(), 250, "2.1.5")
        expect(c.reply(), 250, "2.0.0")
        expect(c.reply(), 250, "2.0.0")
        q1 = qid_of(expect(c.reply(), 250, "2.0.0"))
        expect(c.reply(), 250, "2.1.0")
        expect(c.reply(), 250, "2.1.5")
        q2 = qid_of(expect(c.reply(), 250, "2.0.0"))
        expect(c.reply(), 221)
    _, rest = stored_message(ternd, q1)
    assert rest == b"".join(chunks)
    _, rest2 = stored_message(ternd, q2)
    assert rest2 == b"Hi\r\n\r\n"
    q = {e["id"]: e for e in ternd.queue()}
    assert q[q2]["sender"] == "b@b.test"


def test_bdat_without_transaction(ternd):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        c.send(b"BDAT 4 LAST\r\nabcd")
        expect(c.reply(), 503, "5.5.1")
        # the chunk data was skipped: the connection is in sync
        expect(c.cmd("NOOP"), 250, "2.0.0")


def test_bdat_bare_lf_rejected(ternd):
    with ternd.raw() as c:
        c.envelope()
        chunk = b"Subject: x\r\n\r\nbare\nlf\r\n"
        c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        expect(c.reply(), 550, "5.6.0")
        expect(c.cmd("NOOP"), 250, "2.0.0")
    assert ternd.queue() == []


def test_bdat_too_big(ternd_factory):
    t = ternd_factory({"smtp": {"max_message_size": 1000}})
    with t.raw() as c:
        c.envelope()
        chunk = b"Subject: x\r\n\r\n" + (b"y" * 98 + b"\r\n") * 20
        c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        expect(c.reply(), 552, "5.3.4")
        expect(c.cmd("NOOP"), 250, "2.0.0")
    assert t.queue() == []


def test_data_after_bdat_refused(ternd):
    with ternd.raw() as c:
        c.envelope()
        c.send(b"BDAT 4\r\nab\r\n")
        expect(c.reply(), 250, "2.0.0")
        r = c.cmd("DATA")
        assert r.code == 503, r


def _dribble(c, parts):
    import socket as _s
    import time as _t
    c.sock.setsockopt(_s.IPPROTO_TCP, _s.TCP_NODELAY, 1)
    for p in parts:
        c.send(p)
        _t.sleep(0.02)


@pytest.mark.parametrize("parts", [
    [b"..first line is stuffed\r\nbody\r", b"\n.", b"\r\n"],
    [b"..first line is stuffed\r\nbody\r\n", b".", b"\r", b"\n"],
    [b"..first line is stuffed\r\nbody", b"\r", b"\n", b".\r\n"],
    [b".", b".first line is stuffed\r\nbody\r\n.\r\n"],
], ids=["split-after-dot", "byte-per-byte", "split-crlf", "split-stuffing"])
def test_terminator_split_across_segments(ternd, parts):
    with ternd.raw() as c:
        c.envelope()
        expect(c.cmd("DATA"), 354)
        _dribble(c, parts)
        qid = qid_of(expect(c.reply(), 250, "2.0.0"))
        expect(c.cmd("NOOP"), 250, "2.0.0")
    _, rest = stored_message(ternd, qid)
    assert rest == b".first line is stuffed\r\nbody\r\n"


# ---------------------------------------------------------------- large messages

def _big_message(n_lines, seed=0):
    import random
    rnd = random.Random(seed)
    lines = [b"Subject: big %d\r\nMessage-ID: <big-%d@client.test>\r\n\r\n" % (seed, seed)]
    for i in range(n_lines):
        text = bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz0123456789 .") for _ in range(rnd.randint(0, 120)))
        if i % 97 == 0:
            text = b"." + text  # leading dots, stuffed on the wire
        lines.append(text + b"\r\n")
    return b"".join(lines)


def _stuff(msg):
    out = b"\r\n".join((b"." + l if l.startswith(b".") else l) for l in msg.split(b"\r\n"))
    return out


def test_large_message_data(ternd):
    msg = _big_message(50000, seed=1)  # ~3 MB: several spool chunks
    assert len(msg) > 2_500_000
    with ternd.raw(timeout=60) as c:
        c.envelope()
        qid = qid_of(expect(c.data(_stuff(msg) + b".\r\n"), 250, "2.0.0"))
    _, rest = stored_message(ternd, qid)
    assert len(rest) == len(msg)
    assert rest == msg
    ev = ternd.wait_event("received", qid=qid)
    assert int(ev["size"]) in (len(msg), len(ternd.body_bytes(qid))), ev


def test_large_message_bdat(ternd):
    msg = _big_message(50000, seed=2)
    with ternd.raw(timeout=60) as c:
        c.envelope()
        step = 700_001
        parts = [msg[i:i + step] for i in range(0, len(msg), step)]
        for i, p in enumerate(parts):
            last = i == len(parts) - 1
            c.send(b"BDAT %d%s\r\n" % (len(p), b" LAST" if last else b"") + p)
            r = expect(c.reply(), 250, "2.0.0")
        qid = qid_of(r)
    _, rest = stored_message(ternd, qid)
    assert rest == msg


def test_large_message_refused_late_leaves_nothing(ternd):
    msg = _big_message(30000, seed=3) + b"late bare\nLF\r\n"
    with ternd.raw(timeout=60) as c:
        c.envelope()
        expect(c.data(_stuff(msg) + b".\r\n"), 550, "5.6.0")
        expect(c.cmd("NOOP"), 250, "2.0.0")
    assert ternd.queue() == []
    ternd.stop()
    ternd.start()
    assert ternd.queue() == []


def test_sigkill_during_large_transfer_leaves_nothing(ternd):
    msg = _stuff(_big_message(40000, seed=4))
    c = ternd.raw(timeout=60)
    c.envelope()
    expect(c.cmd("DATA"), 354)
    c.send(msg[: len(msg) // 2])
    # wait until the daemon has read all of it (chunks spilled to the spool)
    lport = c.sock.getsockname()[1]
    wait_until(lambda: server_rx_queue(ternd.port, lport) == 0, timeout=15,
               what="daemon reading the partial message")
    before = ternd.log()
    ternd.kill()
    c.close()
    assert "event=received" not in before.split("event=connect")[-1]
    ternd.start()
    assert ternd.queue() == []
    assert send_simple(ternd)
