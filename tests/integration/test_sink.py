"""tern-sink: the receiving SMTP server of the load-test kit.

Each test starts its own tern-sink on a free loopback port and drives it with
real clients (raw sockets, smtplib, ssl). Counts are read from the JSON report
tern-sink rewrites on SIGUSR1 and writes at exit.
"""
import json
import mailbox
import os
import re
import ssl
import subprocess
import time

import pytest

from conftest import SINK, SINK_TIMEOUT, client_tls_context, expect, free_port, wait_until

TIMEOUT = SINK_TIMEOUT
MESSAGE = (b"From: a@b.test\r\nTo: x@sink.test\r\nSubject: hello\r\n\r\n"
           b"Hello.\r\n..a stuffed line\r\n")
# What the sink counts for MESSAGE: content octets after dot-unstuffing.
MESSAGE_OCTETS = len(MESSAGE) - 1


def send_message(c, rcpts=("x@sink.test",), body=MESSAGE, sender="a@b.test"):
    """One transaction on an open, greeted connection; returns the final reply."""
    expect(c.cmd(f"MAIL FROM:<{sender}>"), 250, "2.1.0")
    for r in rcpts:
        expect(c.cmd(f"RCPT TO:<{r}>"), 250, "2.1.5")
    return c.data(body + b".\r\n")


def ehlo_keywords(reply):
    return {line.split()[0].upper() for line in reply.lines[1:]}


# --------------------------------------------------------------------------
# Receiving
# --------------------------------------------------------------------------

def test_plain_session_is_accepted_and_counted(sink_factory):
    sink = sink_factory()
    with sink.raw() as c:
        assert c.banner.code == 220 and "tern-sink" in c.banner.text
        expect(c.ehlo(), 250)
        expect(send_message(c, rcpts=("x@sink.test", "y@sink.test")), 250, "2.0.0")
        expect(send_message(c), 250, "2.0.0")
        expect(c.cmd("QUIT"), 221)
    with sink.smtp() as s:
        s.sendmail("a@b.test", ["z@sink.test"], MESSAGE)
    r = sink.report()
    assert r["connections"] == 2
    assert r["messages"] == 3
    assert r["recipients"] == 4
    # smtplib stuffs MESSAGE itself, so its copy arrives with the ".." intact.
    assert r["bytes"] == 2 * MESSAGE_OCTETS + len(MESSAGE)
    assert r["store_errors"] == 0
    assert r["elapsed_s"] >= 0 and r["messages_per_s"] >= 0
    assert r["e2e_latency_ms"]["count"] == 0
    # The report is rewritten on every request, without stopping the sink.
    with sink.smtp() as s:
        s.sendmail("a@b.test", ["z@sink.test"], MESSAGE)
    assert sink.report()["messages"] == 4


def test_every_extension_is_advertised_by_default(sink_factory):
    sink = sink_factory("--max-size", "12345")
    with sink.raw() as c:
        r = expect(c.ehlo(), 250)
        assert r.lines[0] == "sink.test"
        assert ehlo_keywords(r) == {"PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "DSN",
                                    "STARTTLS", "CHUNKING"}
        assert "SIZE 12345" in r.lines
        expect(c.cmd("MAIL FROM:<a@b.test> SIZE=12346"), 552, "5.3.4")
        expect(c.cmd("MAIL FROM:<a@b.test> SIZE=100 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=e1"), 250)
        expect(c.cmd("RCPT TO:<x@sink.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@sink.test"), 250)
        expect(c.data(b"x" * 20000 + b"\r\n.\r\n"), 552, "5.3.4")
    assert sink.report()["messages"] == 0


def test_pipelined_batch_is_answered_in_order(sink_factory):
    sink = sink_factory()
    with sink.raw() as c:
        expect(c.ehlo(), 250)
        c.send("MAIL FROM:<a@b.test>\r\nRCPT TO:<x@sink.test>\r\nRCPT TO:<bad\r\nRCPT TO:<y@sink.test>\r\nDATA\r\n")
        expect(c.reply(), 250, "2.1.0")
        expect(c.reply(), 250, "2.1.5")
        expect(c.reply(), 501)
        expect(c.reply(), 250, "2.1.5")
        expect(c.reply(), 354)
        # The content, the next transaction and QUIT in one write.
        c.send(MESSAGE + b".\r\nMAIL FROM:<>\r\nRCPT TO:<z@sink.test>\r\nNOOP\r\nRSET\r\nQUIT\r\n")
        expect(c.reply(), 250, "2.0.0")
        expect(c.reply(), 250, "2.1.0")
        expect(c.reply(), 250, "2.1.5")
        expect(c.reply(), 250)
        expect(c.reply(), 250)
        expect(c.reply(), 221)
        assert c.closed()
    r = sink.report()
    assert (r["messages"], r["recipients"], r["bytes"]) == (1, 2, MESSAGE_OCTETS)


def server_data_segments(server_port, client_port):
    """Data segments the server side of our loopback connection has sent (ss -i)."""
    out = subprocess.run(["ss", "-tinH", "state", "established",
                          f"( sport = :{server_port} and dport = :{client_port} )"],
                         capture_output=True, text=True, timeout=TIMEOUT).stdout
    m = re.search(r"\bdata_segs_out:(\d+)", out)
    assert m, f"connection not found by ss: {out!r}"
    return int(m.group(1))


def test_pipelined_replies_leave_in_one_write(sink_factory):
    # Twenty commands in one segment: the replies are buffered and flushed
    # once no further command is pending, so they leave in one segment, not twenty.
    sink = sink_factory()
    with sink.raw() as c:
        expect(c.ehlo(), 250)
        client_port = c.sock.getsockname()[1]
        before = server_data_segments(sink.port, client_port)
        c.send("NOOP\r\n" * 20)
        for _ in range(20):
            expect(c.reply(), 250)
        assert server_data_segments(sink.port, client_port) - before <= 2


def test_bdat_chunks(sink_factory, workdir):
    maildir = os.path.join(workdir, "md")
    sink = sink_factory("--maildir", maildir)
    with sink.raw() as c:
        expect(c.ehlo(), 250)
        part1, part2 = b"Subject: chunked\r\n\r\nfirst half, ", b"second half\r\n.not stuffed\r\n"
        c.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@sink.test>\r\n"
               + f"BDAT {len(part1)}\r\n".encode() + part1
               + f"BDAT {len(part2)} LAST\r\n".encode() + part2)
        expect(c.reply(), 250, "2.1.0")
        expect(c.reply(), 250, "2.1.5")
        r = expect(c.reply(), 250, "2.0.0")
        assert f"{len(part1)} octets" in r.text
        expect(c.reply(), 250, "2.0.0")
        # BDAT without a transaction: the chunk is consumed, the session goes on.
        c.send(b"BDAT 5 LAST\r\nabcde")
        expect(c.reply(), 503)
        expect(c.cmd("NOOP"), 250)
    r = sink.report()
    assert (r["messages"], r["bytes"]) == (1, len(part1) + len(part2))
    files = os.listdir(os.path.join(maildir, "new"))
    assert len(files) == 1
    with open(os.path.join(maildir, "new", files[0]), "rb") as f:
        assert f.read().endswith(b"\n\nfirst half, second half\n.not stuffed\n")


def test_starttls_with_a_generated_certificate(sink_factory):
    sink = sink_factory("--hostname", "tls.sink.test")
    with sink.smtp() as s:
        s.ehlo()
        assert s.has_extn("starttls")
        s.starttls(context=client_tls_context())
        s.ehlo()
        assert not s.has_extn("starttls")
        assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
        cert = s.sock.getpeercert(binary_form=True)
        assert b"tls.sink.test" in cert
        s.sendmail("a@b.test", ["x@sink.test"], MESSAGE)
    with sink.raw() as c:  # commands pipelined after STARTTLS in clear are discarded
        expect(c.ehlo(), 250)
        c.send("STARTTLS\r\nNOOP\r\n")
        expect(c.reply(), 220)
        c.sock = client_tls_context().wrap_socket(c.sock, server_hostname="localhost")
        c.buf = b""
        expect(c.cmd("MAIL FROM:<a@b.test>"), 503)  # TLS forgets the EHLO
        expect(c.ehlo(), 250)
        expect(c.cmd("STARTTLS"), 503)
    assert sink.report()["messages"] == 1


def test_starttls_with_given_certificate(sink_factory, cert_pair):
    cert, key = cert_pair
    sink = sink_factory("--cert", cert, "--key", key)
    with sink.smtp() as s:
        s.starttls(context=client_tls_context())
        served = s.sock.getpeercert(binary_form=True)
        s.sendmail("a@b.test", ["x@sink.test"], MESSAGE)
    with open(cert) as f:
        assert served == ssl.PEM_cert_to_DER_cert(f.read())


def test_ipv6_listener(sink_factory):
    sink = sink_factory(listen=lambda port: [f"127.0.0.1:{port}", f"[::1]:{port}"])
    assert f"listening on [::1]:{sink.port}" in sink.output()
    with sink.raw(host="::1") as c:
        expect(c.ehlo(), 250)
        expect(send_message(c), 250)
    assert sink.report()["messages"] == 1


def test_maildir_stores_envelope_and_message(sink_factory, workdir):
    maildir = os.path.join(workdir, "md")
    sink = sink_factory("--maildir", maildir)
    with sink.raw() as c:
        expect(c.ehlo(), 250)
        expect(send_message(c, rcpts=("x@sink.test", "y@sink.test")), 250)
        expect(send_message(c, sender="", rcpts=("bounce@sink.test",)), 250)
    # "250" is sent once the file is in new/: no waiting needed.
    new = os.path.join(maildir, "new")
    assert len(os.listdir(new)) == 2
    assert os.listdir(os.path.join(maildir, "tmp")) == []
    box = mailbox.Maildir(maildir, create=False)
    msgs = sorted(box, key=lambda m: m["Return-Path"])
    assert msgs[0]["Return-Path"] == "<>"
    assert msgs[0].get_all("X-Tern-Sink-Rcpt") == ["<bounce@sink.test>"]
    assert msgs[1]["Return-Path"] == "<a@b.test>"
    assert msgs[1].get_all("X-Tern-Sink-Rcpt") == ["<x@sink.test>", "<y@sink.test>"]
    assert msgs[1]["Subject"] == "hello"
    with open(os.path.join(new, sorted(os.listdir(new))[0]), "rb") as f:
        raw = f.read()
    assert raw.startswith(b"Return-Path: <")
    assert raw.endswith(b"\n\nHello.\n.a stuffed line\n")
    assert b"\r" not in raw


def test_maildir_stores_the_esmtp_parameters_as_sent(sink_factory, workdir):
    maildir = os.path.join(workdir, "md")
    sink = sink_factory("--maildir", maildir)
    with sink.smtp() as s:
        s.sendmail("a@b.test", ["bob@x.test"], MESSAGE,
                   mail_options=["RET=HDRS", "ENVID=abc+2Bdef"],
                   rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;bob@x.test"])
    with sink.raw() as c:
        expect(c.ehlo(), 250)
        # A recipient without parameters gets no Params line; extra spaces
        # around the parameters are not part of them.
        expect(c.cmd("MAIL FROM:<> BODY=8BITMIME  "), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<p@sink.test>"), 250, "2.1.5")
        expect(c.cmd("RCPT TO:<q@sink.test>   NOTIFY=NEVER "), 250, "2.1.5")
        expect(c.data(MESSAGE + b".\r\n"), 250)
    new = os.path.join(maildir, "new")
    raws = []
    for name in os.listdir(new):
        with open(os.path.join(new, name), "rb") as f:
            raws.append(f.read())
    raws.sort()
    assert raws[0].startswith(b"Return-Path: <>\n"
                              b"X-Tern-Sink-Mail-Params: BODY=8BITMIME\n"
                              b"X-Tern-Sink-Rcpt: <p@sink.test>\n"
                              b"X-Tern-Sink-Rcpt: <q@sink.test>\n"
                              b"X-Tern-Sink-Rcpt-Params: q@sink.test NOTIFY=NEVER\n"
                              b"From: a@b.test\n")
    # smtplib adds "size=N" (lower case, kept as sent) first when SIZE is advertised.
    assert raws[1].startswith(b"Return-Path: <a@b.test>\n"
                              b"X-Tern-Sink-Mail-Params: size=%d RET=HDRS ENVID=abc+2Bdef\n"
                              b"X-Tern-Sink-Rcpt: <bob@x.test>\n"
                              b"X-Tern-Sink-Rcpt-Params: bob@x.test NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@x.test\n"
                              b"From: a@b.test\n" % len(MESSAGE))


def test_mbox_quotes_from_lines(sink_factory, workdir):
    path = os.path.join(workdir, "sink.mbox")
    sink = sink_factory("--mbox", path)
    body = b"Subject: quoting\r\n\r\nFrom the start\r\n>From quoted\r\nFromage\r\n"
    with sink.raw() as c:
        expect(c.ehlo(), 250)
        expect(send_message(c, body=body), 250)
        expect(send_message(c, sender="", rcpts=("p@sink.test", "q@sink.test")), 250)
    with open(path, "rb") as f:
        raw = f.read()
    assert raw.startswith(b"From a@b.test ")
    assert b"\n\n>From the start\n>>From quoted\nFromage\n\nFrom MAILER-DAEMON " in raw
    box = mailbox.mbox(path, create=False)
    msgs = list(box)
    assert len(msgs) == 2
    assert msgs[0]["Return-Path"] == "<a@b.test>"
    assert msgs[0].get_all("X-Tern-Sink-Rcpt") == ["<x@sink.test>"]
    assert msgs[1]["Return-Path"] == "<>"
    assert msgs[1].get_all("X-Tern-Sink-Rcpt") == ["<p@sink.test>", "<q@sink.test>"]
    assert sink.report()["messages"] == 2


# --------------------------------------------------------------------------
# Hidden extensions
# --------------------------------------------------------------------------

ALL_EXTENSIONS = ["PIPELINING", "DSN", "STARTTLS", "8BITMIME", "CHUNKING", "SIZE", "SMTPUTF8",
                  "ENHANCEDSTATUSCODES"]


@pytest.mark.parametrize("ext", ALL_EXTENSIONS)
def test_hide_removes_the_extension(sink_factory, ext):
    sink = sink_factory("--hide", ext.lower())
    with sink.raw() as c:
        keywords = ehlo_keywords(expect(c.ehlo(), 250))
    assert keywords == set(ALL_EXTENSIONS) - {ext}


def test_hidden_extensions_are_refused(sink_factory):
    sink = sink_factory("--hide", "STARTTLS,CHUNKING,SIZE,8BITMIME,SMTPUTF8,DSN,ENHANCEDSTATUSCODES,PIPELINING")
    with sink.raw() as c:
        r = expect(c.ehlo(), 250)
        assert r.lines == ["sink.test"]
        expect(c.cmd("STARTTLS"), 502)
        for param in ("SIZE=10", "BODY=8BITMIME", "SMTPUTF8", "RET=FULL"):
            r = expect(c.cmd(f"MAIL FROM:<a@b.test> {param}"), 555)
            assert r.enhanced is None  # no enhanced codes once ENHANCEDSTATUSCODES is hidden
        r = expect(c.cmd("MAIL FROM:<a@b.test>"), 250)
        assert r.lines == ["Ok"]
        expect(c.cmd("RCPT TO:<x@sink.test> NOTIFY=NEVER"), 555)
        expect(c.cmd("RCPT TO:<x@sink.test>"), 250)
        c.send(b"BDAT 3 LAST\r\nabc")
        expect(c.reply(), 502)
        expect(c.data(MESSAGE + b".\r\n"), 250)
    assert sink.report()["messages"] == 1


# --------------------------------------------------------------------------
# Fault injection
# --------------------------------------------------------------------------

def test_banner_5xx_then_only_quit(sink_factory):
    sink = sink_factory("--fault", "banner=554")
    with sink.raw() as c:
        assert (c.banner.code, c.banner.enhanced) == (554, "5.0.0")
        assert "tern-sink injected fault" in c.banner.text
        expect(c.ehlo(), 503)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 503)
        expect(c.cmd("QUIT"), 221)
        assert c.closed()
    assert sink.report()["faults"]["banner"] == 1


def test_421_closes_the_connection(sink_factory):
    sink = sink_factory("--fault", "banner=421:0.5", "--fault", "rcpt=421")
    with sink.raw() as c:  # event 0: no fault
        assert c.banner.code == 220
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250)
        expect(c.cmd("RCPT TO:<x@sink.test>"), 421, "4.0.0")
        assert c.closed()
    with sink.raw() as c:  # event 1: fault
        assert c.banner.code == 421
        assert c.closed()
    r = sink.report()
    assert r["faults"]["banner"] == 1 and r["faults"]["rcpt"] == 1 and r["messages"] == 0


def test_helo_fault(sink_factory):
    sink = sink_factory("--fault", "helo=550:0.5")
    with sink.raw() as c:
        expect(c.ehlo(), 250)  # event 0
        r = expect(c.cmd("HELO client.test"), 550, "5.0.0")  # event 1
        expect(c.cmd("MAIL FROM:<a@b.test>"), 503)  # the failed greeting left us ungreeted
        expect(c.ehlo(), 250)  # event 2
        r = expect(c.ehlo(), 550)  # event 3
        assert r.text == "5.0.0 tern-sink injected fault"
    assert sink.report()["faults"]["helo"] == 2


def test_rcpt_fraction_is_exact(sink_factory):
    sink = sink_factory("--fault", "rcpt=450:0.25")
    with sink.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250)
        expect(c.cmd("RCPT TO:<bad"), 501)  # refused anyway: not an event
        codes = [c.cmd(f"RCPT TO:<r{i}@sink.test>").code for i in range(8)]
        expect(c.data(MESSAGE + b".\r\n"), 250)
    assert codes == [250, 250, 250, 450, 250, 250, 250, 450]
    r = sink.report()
    assert r["faults"]["rcpt"] == 2
    assert r["recipients"] == 6


def test_mail_fraction_over_transactions(sink_factory):
    sink = sink_factory("--fault", "mail=451:0.5")
    codes = []
    with sink.raw() as c:
        expect(c.ehlo(), 250)
        for _ in range(6):
            r = c.cmd("MAIL FROM:<a@b.test>")
            codes.append((r.code, r.enhanced))
            if r.code == 250:
                expect(c.cmd("RSET"), 250)
    assert codes == [(250, "2.1.0"), (451, "4.0.0")] * 3
    assert sink.report()["faults"]["mail"] == 3


def test_data_fault_on_data_and_bdat(sink_factory):
    sink = sink_factory("--fault", "data=554")
    with sink.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250)
        expect(c.cmd("RCPT TO:<x@sink.test>"), 250)
        expect(c.cmd("DATA"), 554, "5.0.0")  # instead of 354: no content follows
        expect(c.cmd("RCPT TO:<x@sink.test>"), 503)  # the transaction failed
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250)
        expect(c.cmd("RCPT TO:<x@sink.test>"), 250)
        c.send(b"BDAT 5 LAST\r\nabc\r\n")
        expect(c.reply(), 554, "5.0.0")
        expect(c.cmd("NOOP"), 250)
    r = sink.report()
    assert r["faults"]["data"] == 2 and r["messages"] == 0


def test_bdat_chunk_fault_refuses_the_rest_of_the_message(sink_factory):
    sink = sink_factory("--fault", "data=452:0.5")
    with sink.raw() as c:
        expect(c.ehlo(), 250)
        c.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@sink.test>\r\n"
               b"BDAT 3\r\nabcBDAT 3\r\ndefBDAT 2 LAST\r\n\r\n")
        expect(c.reply(), 250)
        expect(c.reply(), 250)
        expect(c.reply(), 250)  # chunk event 0
        expect(c.reply(), 452, "4.0.0")  # chunk event 1: injected
        expect(c.reply(), 452, "4.0.0")  # RFC 3030: later chunks of that message are refused too
        expect(send_message(c), 250)  # a new transaction is fine
    r = sink.report()
    assert r["faults"]["data"] == 1 and r["messages"] == 1


def test_dot_fraction_is_exact_across_workers(sink_factory):
    # Eight connections spread over two workers: the counter is per process.
    sink = sink_factory("--fault", "dot=554:0.250", threads=2)
    assert "tern-sink: injecting --fault dot=554:0.25\n" in sink.output()
    codes = []
    for _ in range(8):
        with sink.raw() as c:
            expect(c.ehlo(), 250)
            r = send_message(c)
            codes.append((r.code, r.enhanced))
            expect(c.cmd("QUIT"), 221)
    assert codes.count((554, "5.0.0")) == 2
    assert codes.count((250, "2.0.0")) == 6
    assert [i for i, c in enumerate(codes) if c[0] == 554] == [3, 7]
    r = sink.report()
    assert r["faults"]["dot"] == 2 and r["messages"] == 6


def test_dot_421_closes_after_the_content(sink_factory):
    sink = sink_factory("--fault", "dot=421")
    with sink.raw() as c:
        expect(c.ehlo(), 250)
        expect(send_message(c), 421, "4.0.0")
        assert c.closed()
    r = sink.report()
    assert r["messages"] == 0 and r["faults"]["dot"] == 1


def timed(fn):
    t0 = time.monotonic()
    r = fn()
    return r, time.monotonic() - t0


def test_delay_is_applied_to_its_fraction(sink_factory):
    sink = sink_factory("--delay", "rcpt=400:0.5", "--delay", "banner=300")
    t0 = time.monotonic()
    with sink.raw() as c:
        assert time.monotonic() - t0 >= 0.3
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250)
        r0, t_fast = timed(lambda: c.cmd("RCPT TO:<x@sink.test>"))
        r1, t_slow = timed(lambda: c.cmd("RCPT TO:<y@sink.test>"))
        expect(r0, 250)
        expect(r1, 250)  # delayed, not refused
    assert t_slow >= 0.4, t_slow
    assert t_fast < 0.3, t_fast
    r = sink.report()
    assert r["delays"]["rcpt"] == 1 and r["delays"]["banner"] == 1
    assert r["faults"]["rcpt"] == 0


def test_delay_and_fault_together(sink_factory):
    sink = sink_factory("--delay", "dot=300", "--fault", "dot=451")
    with sink.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250)
        expect(c.cmd("RCPT TO:<x@sink.test>"), 250)
        expect(c.cmd("DATA"), 354)
        c.send(MESSAGE + b".\r\n")
        r, took = timed(c.reply)
        expect(r, 451, "4.0.0")
    assert took >= 0.3


def drive_to(c, point):
    """Runs a session up to the event at `point`, without reading its reply
    (for `banner`, the event is the connection itself)."""
    if point == "banner":
        return
    c.banner = c.reply()
    if point == "helo":
        c.send("EHLO client.test\r\n")
        return
    expect(c.ehlo(), 250)
    if point == "mail":
        c.send("MAIL FROM:<a@b.test>\r\n")
        return
    expect(c.cmd("MAIL FROM:<a@b.test>"), 250)
    if point == "rcpt":
        c.send("RCPT TO:<x@sink.test>\r\n")
        return
    expect(c.cmd("RCPT TO:<x@sink.test>"), 250)
    if point == "data":
        c.send("DATA\r\n")
        return
    expect(c.cmd("DATA"), 354)
    c.send(MESSAGE + b".\r\n")


@pytest.mark.parametrize("point", ["banner", "helo", "mail", "rcpt", "data", "dot"])
def test_drop_closes_without_replying(sink_factory, point):
    sink = sink_factory("--drop", point)
    c = sink.raw(banner=False)
    try:
        drive_to(c, point)
        assert c.closed(), f"still open after a drop at {point}"
        assert c.buf == b"", f"a reply was sent before the drop: {c.buf!r}"
    finally:
        c.close()
    r = sink.report()
    assert r["drops"][point] == 1 and r["messages"] == 0


def test_drop_fraction_for_bdat_chunk(sink_factory):
    sink = sink_factory("--drop", "data:0.5")
    with sink.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250)
        expect(c.cmd("RCPT TO:<x@sink.test>"), 250)
        c.send(b"BDAT 3\r\nabc")
        expect(c.reply(), 250)  # event 0
        c.send(b"BDAT 3 LAST\r\ndef")  # event 1: dropped
        assert c.closed() and c.buf == b""
    assert sink.report()["drops"]["data"] == 1


# --------------------------------------------------------------------------
# Latency, reports, lifecycle, command line
# --------------------------------------------------------------------------

def test_e2e_latency_from_the_bench_header(sink_factory):
    sink = sink_factory()
    with sink.raw() as c:
        expect(c.ehlo(), 250)
        for _ in range(5):
            sent = time.time_ns() // 1000 - 80_000  # stamped 80 ms ago
            body = f"X-Tern-Bench-Sent: {sent}\r\nSubject: timed\r\n\r\nbody\r\n".encode()
            expect(send_message(c, body=body), 250)
        expect(send_message(c), 250)  # no header: not in the latency figures
    r = sink.report()
    lat = r["e2e_latency_ms"]
    assert r["messages"] == 6 and lat["count"] == 5
    assert 80 <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"] < 5000
    code, out = sink.stop()
    assert code == 0
    assert "e2e latency: 5 messages" in out


def test_sigterm_prints_the_summary_and_writes_the_json(sink_factory):
    sink = sink_factory("--fault", "rcpt=450:0.5")
    with sink.smtp() as s:
        s.sendmail("a@b.test", ["x@sink.test", "y@sink.test"], MESSAGE)  # the second RCPT is refused
    idle = sink.raw()  # an idle connection does not hold the shutdown up
    try:
        code, out = sink.stop()
    finally:
        idle.close()
    assert code == 0
    assert "tern-sink summary" in out
    assert "messages:    1\n" in out
    assert "recipients:  1\n" in out
    assert "faults:      banner=0 helo=0 mail=0 rcpt=1 data=0 dot=0" in out
    with open(sink.json_path) as f:
        r = json.load(f)
    assert r["messages"] == 1 and r["connections"] == 2 and r["faults"]["rcpt"] == 1


def test_shutdown_does_not_wait_for_a_delay(sink_factory):
    sink = sink_factory("--delay", "mail=30000")
    with sink.raw() as c:
        expect(c.ehlo(), 250)
        c.send("MAIL FROM:<a@b.test>\r\n")
        wait_until(lambda: sink.report()["delays"]["mail"] == 1, TIMEOUT, what="the delay to start")
        (code, out), took = timed(sink.stop)
        assert c.closed() and c.buf == b""
    assert code == 0 and took < 2, took


def test_sigusr1_prints_the_summary_unless_quiet(sink_factory):
    loud = sink_factory()
    loud.report()
    wait_until(lambda: "tern-sink summary" in loud.output(), TIMEOUT, what="the summary on SIGUSR1")
    assert loud.proc.poll() is None  # still running
    quiet = sink_factory("--quiet")
    assert quiet.report()["messages"] == 0
    assert "summary" not in quiet.output()


def test_idle_connection_times_out(sink_factory):
    sink = sink_factory("--timeout", "1")
    with sink.raw() as c:
        r, took = timed(lambda: c.reply(timeout=5))
        expect(r, 421, "4.4.2")
        assert 0.9 <= took < 4
        assert c.closed()


def test_help_lists_every_option():
    r = subprocess.run([SINK, "--help"], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0
    for opt in ("--listen", "--threads", "--hostname", "--cert", "--key", "--json", "--maildir", "--mbox",
                "--max-size", "--timeout", "--quiet", "--fault", "--delay", "--drop", "--hide", "--help"):
        assert opt in r.stdout, opt
    assert "default" in r.stdout


@pytest.mark.parametrize("args", [["--bogus"], ["--threads", "zero"], ["--fault", "rcpt=250"],
                                  ["--drop", "nowhere"], ["--hide", "AUTH"], ["--listen", "not-an-address"],
                                  ["--cert", "only.pem"]])
def test_bad_option_exits_2(args):
    r = subprocess.run([SINK, *args], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 2
    assert r.stderr.startswith("tern-sink: ")
    assert r.stdout == ""


@pytest.mark.parametrize("args", [["--cert", "/nonexistent.pem", "--key", "/nonexistent.key"],
                                  ["--maildir", "/proc/no-such-dir/md"]])
def test_startup_failure_exits_1(args):
    r = subprocess.run([SINK, "--listen", f"127.0.0.1:{free_port()}", *args], capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 1
    assert r.stderr.startswith("tern-sink: ")
    assert "listening" not in r.stdout
