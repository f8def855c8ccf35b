"""SMTP command set and sequencing (RFC 5321, RFC 3463 enhanced codes)."""
import re
import smtplib

import pytest

from conftest import expect, notify_set, qid_of, simple_message


def test_banner_and_ehlo_keywords(ternd):
    with ternd.raw() as c:
        assert c.banner.code == 220
        assert c.banner.lines[0].startswith(f"{ternd.hostname} ESMTP"), c.banner
        r = expect(c.ehlo(), 250)
        assert r.lines[0].split()[0] == ternd.hostname, r
        kw = [l.split()[0].upper() for l in r.lines[1:] if l.split()]
        for k in ("PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "DSN", "CHUNKING"):
            assert k in kw, f"{k} missing from EHLO: {r.lines}"
        assert "STARTTLS" not in kw, "STARTTLS offered without a certificate"
        size = [l for l in r.lines if l.upper().startswith("SIZE")][0]
        assert size.split()[1] == "52428800", size


def test_ehlo_size_reflects_config(ternd_factory):
    t = ternd_factory({"smtp": {"max_message_size": 12345}})
    with t.raw() as c:
        r = expect(c.ehlo(), 250)
        size = [l for l in r.lines if l.upper().startswith("SIZE")]
        assert size and size[0].split()[1] == "12345", r


def test_helo(ternd):
    with ternd.raw() as c:
        expect(c.cmd("HELO client.test"), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")


def test_full_transaction_codes(ternd):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<x@local.test>"), 250, "2.1.5")
        expect(c.cmd("DATA"), 354)
        c.send(simple_message() + b".\r\n")
        r = expect(c.reply(), 250, "2.0.0")
        assert re.search(r"Ok: queued as [0-9A-Z]{16}\b", r.text), r
        expect(c.cmd("QUIT"), 221, "2.0.0")
        assert c.closed()


@pytest.mark.parametrize("line,code,enh", [
    ("RSET", 250, "2.0.0"),
    ("NOOP", 250, "2.0.0"),
    ("NOOP some argument", 250, "2.0.0"),
    ("HELP", 214, "2.0.0"),
    ("VRFY postmaster", 252, "2.5.0"),
    ("VRFY root", 252, "2.5.0"),
    ("EXPN staff", 502, "5.5.1"),
    ("SAML FROM:<a@b.test>", 502, "5.5.1"),
    ("SEND FROM:<a@b.test>", 502, "5.5.1"),
    ("SOML FROM:<a@b.test>", 502, "5.5.1"),
    ("TURN", 502, "5.5.1"),
    ("FROB", 500, "5.5.2"),
    ("XYZZY plugh", 500, "5.5.2"),
])
def test_simple_commands(ternd, line, code, enh):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd(line), code, enh)
        # the session continues
        expect(c.cmd("NOOP"), 250, "2.0.0")


@pytest.mark.parametrize("line", ["EHLO [127.0.0.1]", "EHLO [IPv6:::1]", "HELO [192.0.2.1]", "EHLO Mixed-Case.Example"])
def test_helo_address_literal(ternd, line):
    with ternd.raw() as c:
        expect(c.cmd(line), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")


def test_mail_parameters_need_ehlo(ternd):
    with ternd.raw() as c:
        expect(c.cmd("HELO client.test"), 250)
        expect(c.cmd("MAIL FROM:<a@b.test> SIZE=100"), 555, "5.5.4")
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")


@pytest.mark.parametrize("line", ["EHLO", "HELO", "EHLO "])
def test_helo_requires_domain(ternd, line):
    with ternd.raw() as c:
        r = c.cmd(line)
        assert r.code == 501, r
        expect(c.cmd("MAIL FROM:<a@b.test>"), 503, "5.5.1")


def test_bdat_bad_size(ternd):
    with ternd.raw() as c:
        c.envelope()
        r = c.cmd("BDAT abc")
        assert r.code == 501, r
        # the chunk length is unknown: closing (421) is as acceptable as carrying on
        try:
            r = c.reply(timeout=0.5)
        except TimeoutError:
            expect(c.cmd("NOOP"), 250, "2.0.0")
        else:
            expect(r, 421, "4.7.0")
            assert c.closed()


def test_commands_case_insensitive(ternd):
    with ternd.raw() as c:
        expect(c.cmd("ehlo client.test"), 250)
        expect(c.cmd("mail from:<a@b.test>"), 250, "2.1.0")
        expect(c.cmd("rcpt to:<x@local.test>"), 250, "2.1.5")
        expect(c.cmd("rset"), 250, "2.0.0")


def test_vrfy_does_not_disclose(ternd):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        a = expect(c.cmd("VRFY root"), 252, "2.5.0")
        b = expect(c.cmd("VRFY no-such-user-xyz"), 252, "2.5.0")
        assert a.text.replace("root", "") == b.text.replace("no-such-user-xyz", ""), (a, b)


def test_command_line_too_long(ternd):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        # 512 octets incl CRLF is allowed
        ok = "NOOP " + "x" * (512 - 2 - 5)
        assert len(ok) + 2 == 512
        expect(c.cmd(ok), 250, "2.0.0")
        long = "NOOP " + "x" * (513 - 2 - 5)
        expect(c.cmd(long), 500, "5.5.2")
        huge = "MAIL FROM:<" + "a" * 5000 + "@b.test>"
        expect(c.cmd(huge), 500, "5.5.2")
        # resynchronised on the next line
        expect(c.cmd("NOOP"), 250, "2.0.0")
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")


def test_command_line_limit_configurable(ternd_factory):
    t = ternd_factory({"smtp": {"max_command_line": 1000}})
    with t.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("NOOP " + "x" * 993), 250, "2.0.0")  # 1000 incl CRLF
        expect(c.cmd("NOOP " + "x" * 994), 500, "5.5.2")  # 1001


def test_mail_before_helo(ternd):
    with ternd.raw() as c:
        expect(c.cmd("MAIL FROM:<a@b.test>"), 503, "5.5.1")


def test_nested_mail(ternd):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        expect(c.cmd("MAIL FROM:<a@b.test>"), 503, "5.5.1")


def test_rcpt_before_mail(ternd):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("RCPT TO:<x@local.test>"), 503, "5.5.1")


def test_data_before_mail(ternd):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("DATA"), 503, "5.5.1")


def test_data_without_valid_recipient(ternd):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<bad syntax>"), 501, "5.1.3")
        expect(c.cmd("DATA"), 554, "5.5.1")
        # session still usable
        expect(c.cmd("RSET"), 250, "2.0.0")


def test_rset_clears_transaction(ternd):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<x@local.test>"), 250, "2.1.5")
        expect(c.cmd("RSET"), 250, "2.0.0")
        expect(c.cmd("RCPT TO:<x@local.test>"), 503, "5.5.1")
        expect(c.cmd("DATA"), 503, "5.5.1")
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")


def test_ehlo_resets_transaction(ternd):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        expect(c.ehlo(), 250)
        expect(c.cmd("RCPT TO:<x@local.test>"), 503, "5.5.1")


@pytest.mark.parametrize("arg", [
    "<a b@b.test>", "<a@b..test>", "a@b.test extra>", "<@b.test>", "<a@>", "<a@b.test",
])
def test_bad_sender_syntax(ternd, arg):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        r = c.cmd(f"MAIL FROM:{arg}")
        assert r.code == 501 and r.enhanced in ("5.1.7", "5.5.4"), r
        # no transaction was started
        expect(c.cmd("RCPT TO:<x@local.test>"), 503, "5.5.1")


def test_bad_sender_address(ternd):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a b@b.test>"), 501, "5.1.7")
        expect(c.cmd("MAIL FROM:<a@b..test>"), 501, "5.1.7")


@pytest.mark.parametrize("arg", ["<x y@local.test>", "<x@local..test>", "<@local.test>", "<>"])
def test_bad_recipient_syntax(ternd, arg):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        expect(c.cmd(f"RCPT TO:{arg}"), 501, "5.1.3")


@pytest.mark.parametrize("path,stored", [
    ('<"john doe"@b.test>', '"john doe"@b.test'),
    ("<@relay.one,@relay.two:u@b.test>", "u@b.test"),   # source route: stripped
    ("<u@[192.0.2.1]>", "u@[192.0.2.1]"),
    ("<u@[IPv6:2001:db8::1]>", "u@[IPv6:2001:db8::1]"),
    ("<U.Ser+tag@B.Test>", "U.Ser+tag@B.Test"),
])
def test_sender_forms(ternd, path, stored):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd(f"MAIL FROM:{path}"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<x@local.test>"), 250, "2.1.5")
        qid = qid_of(expect(c.data(simple_message() + b".\r\n"), 250, "2.0.0"))
    env = {e["id"]: e for e in ternd.queue()}[qid]
    assert env["sender"] == stored


def test_mail_from_space_after_colon(ternd):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM: <a@b.test>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO: <x@local.test>"), 250, "2.1.5")


def test_null_sender_and_postmaster(ternd):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<Postmaster>"), 250, "2.1.5")
        r = expect(c.data(simple_message() + b".\r\n"), 250, "2.0.0")
        qid = qid_of(r)
    env = {e["id"]: e for e in ternd.queue()}[qid]
    assert env["sender"] == ""
    assert [x["address"].lower() for x in env["recipients"]] == ["postmaster"]


@pytest.mark.parametrize("cmd", [
    "MAIL FROM:<a@b.test> FOO=BAR",
    "MAIL FROM:<a@b.test> XYZ",
])
def test_unknown_mail_parameter(ternd, cmd):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd(cmd), 555, "5.5.4")


def test_unknown_rcpt_parameter(ternd):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<x@local.test> FOO=BAR"), 555, "5.5.4")


@pytest.mark.parametrize("cmd", [
    "MAIL FROM:<a@b.test> SIZE=abc",
    "MAIL FROM:<a@b.test> SIZE=10 SIZE=10",
    "MAIL FROM:<a@b.test> BODY=9BIT",
    "MAIL FROM:<a@b.test> RET=PARTIAL",
    "MAIL FROM:<a@b.test> RET=FULL RET=HDRS",
    "MAIL FROM:<a@b.test> ENVID=" + "x" * 101,
    "MAIL FROM:<a@b.test> ENVID=bad+ZZxtext",
    "MAIL FROM:<a@b.test> BODY=8BITMIME BODY=7BIT",
    "MAIL FROM:<a@b.test> SIZE",
    "MAIL FROM:<a@b.test> SIZE=",
    "MAIL FROM:<a@b.test> SIZE=-1",
])
def test_bad_mail_parameter_value(ternd, cmd):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd(cmd), 501, "5.5.4")


@pytest.mark.parametrize("param", [
    "NOTIFY=NEVER,SUCCESS",
    "NOTIFY=BOGUS",
    "NOTIFY=SUCCESS,SUCCESS",
    "ORCPT=rfc822-without-semicolon",
    "NOTIFY=SUCCESS NOTIFY=FAILURE",
    "NOTIFY=",
    "NOTIFY=SUCCESS,,FAILURE",
    "ORCPT=rfc822;bad+ZZxtext",
])
def test_bad_rcpt_dsn_parameter(ternd, param):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        expect(c.cmd(f"RCPT TO:<x@local.test> {param}"), 501, "5.5.4")
        # transaction still open
        expect(c.cmd("RCPT TO:<x@local.test>"), 250, "2.1.5")


def test_notify_delay_failure(ternd):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<x@local.test> NOTIFY=delay,Failure"), 250, "2.1.5")
        qid = qid_of(expect(c.data(simple_message() + b".\r\n"), 250, "2.0.0"))
    env = {e["id"]: e for e in ternd.queue()}[qid]
    assert notify_set(env["recipients"][0]["notify"]) == {"DELAY", "FAILURE"}


def test_dsn_parameters_stored(ternd):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test> RET=HDRS ENVID=env+2Bid1 SIZE=100 BODY=8BITMIME"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<x@local.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x+40local.test"), 250, "2.1.5")
        expect(c.cmd("RCPT TO:<y@local.test> NOTIFY=NEVER"), 250, "2.1.5")
        qid = qid_of(expect(c.data(simple_message() + b".\r\n"), 250, "2.0.0"))
    env = {e["id"]: e for e in ternd.queue()}[qid]
    assert env["ret"] == "HDRS"
    assert env["envid"] == "env+id1"
    rc = {r["address"]: r for r in env["recipients"]}
    assert set(rc) == {"x@local.test", "y@local.test"}
    assert rc["x@local.test"]["orcpt"].lower() == "rfc822;x@local.test"
    assert notify_set(rc["x@local.test"]["notify"]) == {"SUCCESS", "FAILURE"}, rc
    assert notify_set(rc["y@local.test"]["notify"]) == {"NEVER"}, rc


def test_smtputf8_address_without_param(ternd):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<jürgen@b.test>"), 553, "5.6.7")
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<müller@local.test>"), 553, "5.6.7")


def test_smtputf8_accepted_with_param(ternd):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<jürgen@b.test> SMTPUTF8"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<müller@local.test>"), 250, "2.1.5")
        msg = "From: jürgen@b.test\r\nSubject: grüße\r\nMessage-ID: <u1@b.test>\r\n\r\nÄÖÜ\r\n.\r\n"
        qid = qid_of(expect(c.data(msg.encode()), 250, "2.0.0"))
    env = {e["id"]: e for e in ternd.queue()}[qid]
    assert env["smtputf8"] is True
    assert env["sender"] == "jürgen@b.test"
    assert env["recipients"][0]["address"] == "müller@local.test"


def test_mail_size_too_big(ternd_factory):
    t = ternd_factory({"smtp": {"max_message_size": 10000}})
    with t.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test> SIZE=10001"), 552, "5.3.4")
        expect(c.cmd("MAIL FROM:<a@b.test> SIZE=10000"), 250, "2.1.0")


def test_pipelining_commands(ternd):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        c.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@local.test>\r\nRCPT TO:<bad syntax>\r\n"
               b"RCPT TO:<y@local.test>\r\nDATA\r\n")
        expect(c.reply(), 250, "2.1.0")
        expect(c.reply(), 250, "2.1.5")
        expect(c.reply(), 501, "5.1.3")
        expect(c.reply(), 250, "2.1.5")
        expect(c.reply(), 354)
        c.send(simple_message() + b".\r\nRSET\r\nNOOP\r\nQUIT\r\n")
        qid = qid_of(expect(c.reply(), 250, "2.0.0"))
        expect(c.reply(), 250, "2.0.0")
        expect(c.reply(), 250, "2.0.0")
        expect(c.reply(), 221, "2.0.0")
    env = {e["id"]: e for e in ternd.queue()}[qid]
    assert sorted(r["address"] for r in env["recipients"]) == ["x@local.test", "y@local.test"]


def test_two_transactions_one_session(ternd):
    with ternd.raw() as c:
        c.envelope()
        q1 = qid_of(expect(c.data(simple_message() + b".\r\n"), 250, "2.0.0"))
        c.envelope(ehlo=False)
        q2 = qid_of(expect(c.data(simple_message() + b".\r\n"), 250, "2.0.0"))
    assert q1 != q2
    ids = {e["id"] for e in ternd.queue()}
    assert {q1, q2} <= ids


def test_smtplib_sendmail_and_log(ternd):
    msg = simple_message(msgid="<smtplib-1@client.test>")
    with smtplib.SMTP("127.0.0.1", ternd.port, timeout=10) as s:
        s.ehlo("client.test")
        assert s.has_extn("pipelining") and s.has_extn("chunking")
        refused = s.sendmail("a@b.test", ["x@local.test", "z@local.test"], msg)
        assert refused == {}
    ev = ternd.wait_event("received", message_id="<smtplib-1@client.test>")
    assert ev["client"] == "127.0.0.1"
    assert ev["from"].strip("<>") == "a@b.test"
    assert ev["nrcpt"] == "2"
    assert re.fullmatch(r"[0-9A-Z]{16}", ev["qid"])
    assert int(ev["size"]) > 0
    ternd.wait_event("connect", client="127.0.0.1")
    assert any(e["id"] == ev["qid"] for e in ternd.queue())


def test_startup_log_events(ternd):
    ternd.wait_event("listening")
    ternd.wait_event("started")
    ev = ternd.events("listening")[0]
    assert str(ternd.port) in ev.get("address", ""), ev


def _past_error_limit(c, r, own_code):
    """The error that exceeds the limit may get its own reply first, then 421."""
    if r.code == own_code:
        return c.reply()
    return r


def test_max_errors_disconnect(ternd_factory):
    t = ternd_factory({"smtp": {"max_errors": 3}})
    with t.raw() as c:
        expect(c.ehlo(), 250)
        for _ in range(3):
            expect(c.cmd("FROB"), 500, "5.5.2")
        # the 4th error exceeds max_errors
        r = c.cmd("FROB")
        expect(_past_error_limit(c, r, 500), 421, "4.7.0")
        assert c.closed(), "connection not closed after 421"
    t.wait_event("too_many_errors", client="127.0.0.1")


def test_max_errors_counts_mixed_errors(ternd_factory):
    t = ternd_factory({"smtp": {"max_errors": 2}})
    with t.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("RCPT TO:<x@local.test>"), 503, "5.5.1")
        expect(c.cmd("MAIL FROM:<bad address>"), 501, "5.1.7")
        r = c.cmd("EXPN x")
        expect(_past_error_limit(c, r, 502), 421, "4.7.0")
        assert c.closed()


def test_ipv6_loopback_listener(ternd_factory):
    import socket as _s
    from conftest import RawSMTP, free_port
    try:
        port6 = free_port(_s.AF_INET6, "::1")
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    t = ternd_factory(start=False)
    t.extra_listen = [f"[::1]:{port6}"]
    t.start()
    with RawSMTP("::1", port6) as c:
        expect(c.reply(), 220)
        c.envelope()
        qid = qid_of(expect(c.data(simple_message() + b".\r\n"), 250, "2.0.0"))
    ev = t.wait_event("received", qid=qid)
    assert ev["client"] == "::1"


def _dribble(c, data, step=1):
    """Sends data in separate small segments."""
    import socket as _s
    import time as _t
    c.sock.setsockopt(_s.IPPROTO_TCP, _s.TCP_NODELAY, 1)
    for i in range(0, len(data), step):
        c.send(data[i:i + step])
        _t.sleep(0.005)


def test_command_split_across_segments(ternd):
    with ternd.raw() as c:
        _dribble(c, b"EHLO client.test\r\n")
        expect(c.reply(), 250)
        _dribble(c, b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@local.test>\r\n", 3)
        expect(c.reply(), 250, "2.1.0")
        expect(c.reply(), 250, "2.1.5")


def test_long_command_split_across_segments(ternd):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        _dribble(c, b"NOOP " + b"x" * 600 + b"\r\n", 100)
        expect(c.reply(), 500, "5.5.2")
        expect(c.cmd("NOOP"), 250, "2.0.0")


def test_many_pipelined_commands(ternd):
    with ternd.raw(timeout=30) as c:
        expect(c.ehlo(), 250)
        n = 2000
        c.send(b"".join(b"RSET\r\n" if i % 2 else b"VRFY u%d\r\n" % i for i in range(n)))
        for i in range(n):
            r = c.reply()
            if i % 2:
                expect(r, 250, "2.0.0")
            else:
                expect(r, 252, "2.5.0")
        expect(c.cmd("QUIT"), 221)
