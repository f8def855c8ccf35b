"""Connection restrictions: the deny list, DNS blocklists (dnsmasq serving a
test zone on loopback), the override for authenticated clients and for the
POP-before-SMTP window, and per-client rate limits.

The test clients connect from 127.0.0.2 (or .3) so that the readiness probe
of the fixture, which comes from 127.0.0.1, is never the one refused.
"""
import os
import smtplib
import socket
import ssl
import time

import pytest

from conftest import free_port
from test_auth import PASSWORD, add_user

LISTED = "127.0.0.2"


def connect(t, source=LISTED, port=None):
    return smtplib.SMTP("127.0.0.1", port or t.port, timeout=10, source_address=(source, 0))


def refused_at_connect(t, source=LISTED):
    with pytest.raises(smtplib.SMTPConnectError) as e:
        connect(t, source)
    return e.value.smtp_code, e.value.smtp_error


@pytest.fixture
def blocklist(dns_factory, workdir):
    """dnsmasq answering for bl.test: 127.0.0.2 listed with a reason, and
    slow.test delegated to a server that never answers."""
    conf = os.path.join(workdir, "bl.conf")
    with open(conf, "w") as f:
        f.write('txt-record=2.0.0.127.bl.test,"spam source, see http://bl.test/"\n')
    return dns_factory("--host-record=2.0.0.127.bl.test,127.0.0.2", f"--conf-file={conf}",
                       "--server=/slow.test/127.0.0.1#9")


def test_deny_list_refuses_at_connect(ternd_factory):
    t = ternd_factory({"restrictions": {"deny": [f"{LISTED}/32"], "override": False}})
    code, msg = refused_at_connect(t)
    assert code == 554 and msg.startswith(b"5.7.1"), (code, msg)
    assert t.wait_event("connection_rejected", client=LISTED)
    with connect(t, "127.0.0.3") as c:
        assert c.noop()[0] == 250


def test_dnsbl_hit_gives_the_lists_reason(ternd_factory, blocklist):
    t = ternd_factory({"restrictions": {"dnsbl": ["bl.test"], "override": False},
                       "dns": {"servers": [blocklist.server]}})
    code, msg = refused_at_connect(t)
    assert code == 554, (code, msg)
    assert b"bl.test" in msg and b"spam source, see http://bl.test/" in msg
    ev = t.wait_event("connection_rejected", client=LISTED)
    assert "bl.test" in ev["reason"]
    # A client that is not listed gets in.
    with connect(t, "127.0.0.3") as c:
        assert c.noop()[0] == 250


def test_a_blocklist_that_does_not_answer_fails_open(ternd_factory, blocklist):
    t = ternd_factory({"restrictions": {"dnsbl": ["slow.test"], "dnsbl_timeout": "1s", "override": False},
                       "dns": {"servers": [blocklist.server]}})
    started = time.monotonic()
    with connect(t) as c:
        assert c.noop()[0] == 250
    assert time.monotonic() - started < 5


def test_override_lets_an_authenticated_client_through(ternd_factory, workdir, cert_pair):
    users = os.path.join(workdir, "users")
    add_user(workdir, users, "alice", "alice@local.test")
    cert, key = cert_pair
    t = ternd_factory({"restrictions": {"deny": [f"{LISTED}/32"], "override": True},
                       "auth": {"users_file": users}, "tls": {"certificate": cert, "private_key": key}})
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with connect(t) as c:
        c.ehlo("client.test")
        code, msg = c.mail("x@y.test")
        assert code == 554 and msg.startswith(b"5.7.1"), (code, msg)
        c.rset()
        c.starttls(context=ctx)
        c.ehlo("client.test")
        c.login("alice", PASSWORD)
        assert c.mail("alice@local.test")[0] == 250
    t.wait_event("connection_rejected", client=LISTED, stage="mail")


def test_override_lets_a_pop_client_through_and_can_be_switched_off(ternd_factory):
    t = ternd_factory({"restrictions": {"deny": [f"{LISTED}/32"], "override": True}})
    r = t.ternctl("popauth", "add", LISTED, "30")
    assert r.returncode == 0, r.stdout + r.stderr
    with connect(t) as c:
        c.ehlo("client.test")
        assert c.mail("x@y.test")[0] == 250
    t.wait_event("restriction_overridden", client=LISTED, by="pop_window")
    off = ternd_factory({"restrictions": {"deny": [f"{LISTED}/32"], "override": False}})
    assert off.ternctl("popauth", "add", LISTED, "30").returncode == 0
    assert refused_at_connect(off)[0] == 554


def test_connection_rate_limit(ternd_factory):
    t = ternd_factory({"restrictions": {"connections_per_minute": 3}})
    for _ in range(3):
        with connect(t) as c:
            c.noop()
    code, msg = refused_at_connect(t)
    assert code == 421 and msg.startswith(b"4.7.0"), (code, msg)
    with connect(t, "127.0.0.3") as c:  # other clients are not affected
        assert c.noop()[0] == 250


def test_message_and_recipient_rate_limits(ternd_factory):
    t = ternd_factory({"restrictions": {"messages_per_minute": 2, "recipients_per_minute": 3}})
    with connect(t) as c:
        c.ehlo("client.test")
        for i in range(2):
            assert c.mail("x@y.test")[0] == 250
            c.rset()
        code, msg = c.mail("x@y.test")
        assert code == 451 and msg.startswith(b"4.7.0"), (code, msg)
    with connect(t, "127.0.0.3") as c:
        c.ehlo("client.test")
        assert c.mail("x@y.test")[0] == 250
        for i in range(3):
            assert c.rcpt(f"u{i}@local.test")[0] == 250
        code, msg = c.rcpt("u9@local.test")
        assert code == 451 and msg.startswith(b"4.7.0"), (code, msg)
    t.wait_event("rate_limited", kind="recipients")


def test_ipv6_client_in_the_deny_list(ternd_factory):
    port6 = free_port(socket.AF_INET6, "::1")
    t = ternd_factory({"restrictions": {"deny": ["::1/128"], "override": False}}, start=False)
    t.extra_listen = [f"[::1]:{port6}"]
    t.start()
    with pytest.raises(smtplib.SMTPConnectError) as e:
        smtplib.SMTP("::1", port6, timeout=10)
    assert e.value.smtp_code == 554
    t.wait_event("connection_rejected", client="::1")
