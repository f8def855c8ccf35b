"""Relay policy: local/relay domains from anyone, others only from trusted networks."""
import pytest

from conftest import expect, qid_of, simple_message

UNTRUSTED = {"relay": {"trusted_networks": []}}


def test_trusted_loopback_may_relay(ternd):
    # default trusted_networks include 127.0.0.0/8
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<someone@elsewhere.example>"), 250, "2.1.5")
        qid_of(expect(c.data(simple_message() + b".\r\n"), 250, "2.0.0"))
    assert not ternd.events("relay_rejected")


@pytest.mark.parametrize("trusted", [[], ["192.0.2.0/24"], ["10.0.0.0/8", "::1/128"]])
def test_untrusted_relay_denied(ternd_factory, trusted):
    t = ternd_factory({"relay": {"trusted_networks": trusted}})
    with t.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<x@local.test>"), 250, "2.1.5")
        expect(c.cmd("RCPT TO:<y@relay.test>"), 250, "2.1.5")
        expect(c.cmd("RCPT TO:<z@other.example>"), 554, "5.7.1")
        qid = qid_of(expect(c.data(simple_message() + b".\r\n"), 250, "2.0.0"))
    ev = t.wait_event("relay_rejected")
    assert ev["client"] == "127.0.0.1"
    assert ev["rcpt"].strip("<>") == "z@other.example"
    env = {e["id"]: e for e in t.queue()}[qid]
    assert sorted(r["address"] for r in env["recipients"]) == ["x@local.test", "y@relay.test"]


def test_trusted_host_network(ternd_factory):
    t = ternd_factory({"relay": {"trusted_networks": ["127.0.0.1"]}})
    with t.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<z@other.example>"), 250, "2.1.5")


def test_domain_case_insensitive(ternd_factory):
    t = ternd_factory(UNTRUSTED)
    with t.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<X@LOCAL.TEST>"), 250, "2.1.5")
        expect(c.cmd("RCPT TO:<y@Relay.Test>"), 250, "2.1.5")


def test_postmaster_always_accepted(ternd_factory):
    t = ternd_factory(UNTRUSTED)
    with t.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<postmaster>"), 250, "2.1.5")
        expect(c.cmd("RCPT TO:<POSTMASTER>"), 250, "2.1.5")


@pytest.mark.parametrize("rcpt", [
    "x@sub.local.test",             # no implicit subdomains
    "x@local.test.evil.example",
    "x@notlocal.test",
    "x@local.test.",                # trailing dot
    "x%other.example@local.test",   # percent hack
    "other.example!x@local.test",   # bang path
    '"x@other.example"@local.test',  # quoted @
    "x@[127.0.0.1]",                # address literal
    "x@[IPv6:::1]",
    "@local.test:x@other.example",  # source route to another domain
])
def test_relay_tricks_denied_for_untrusted(ternd_factory, rcpt):
    t = ternd_factory(UNTRUSTED)
    with t.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        r = c.cmd(f"RCPT TO:<{rcpt}>")
        if rcpt.endswith(".") and r.code == 501:
            # a trailing dot is not RFC 5321 Domain syntax: refusing it as such is fine
            expect(r, 501, "5.1.3")
            return
        expect(r, 554, "5.7.1")
        # the transaction is still open for good recipients
        expect(c.cmd("RCPT TO:<x@local.test>"), 250, "2.1.5")
    t.wait_event("relay_rejected", client="127.0.0.1")


@pytest.mark.parametrize("rcpt", ["x%other.example@local.test", "x@[127.0.0.1]", "x@other.example"])
def test_relay_tricks_allowed_for_trusted(ternd, rcpt):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        expect(c.cmd(f"RCPT TO:<{rcpt}>"), 250, "2.1.5")


def test_all_recipients_denied_then_data(ternd_factory):
    t = ternd_factory(UNTRUSTED)
    with t.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<z@other.example>"), 554, "5.7.1")
        expect(c.cmd("DATA"), 554, "5.5.1")
    assert t.queue() == []


def _v6_ternd(ternd_factory, trusted):
    import socket as _s
    from conftest import free_port
    try:
        port6 = free_port(_s.AF_INET6, "::1")
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    t = ternd_factory({"relay": {"trusted_networks": trusted}} if trusted is not None else None, start=False)
    t.extra_listen = [f"[::1]:{port6}"]
    t.start()
    return t, port6


def test_ipv6_loopback_trusted_by_default(ternd_factory):
    from conftest import RawSMTP
    t, port6 = _v6_ternd(ternd_factory, None)
    with RawSMTP("::1", port6) as c:
        expect(c.reply(), 220)
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<z@other.example>"), 250, "2.1.5")


def test_ipv6_untrusted(ternd_factory):
    from conftest import RawSMTP
    t, port6 = _v6_ternd(ternd_factory, ["127.0.0.0/8"])
    with RawSMTP("::1", port6) as c:
        expect(c.reply(), 220)
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<x@local.test>"), 250, "2.1.5")
        expect(c.cmd("RCPT TO:<z@other.example>"), 554, "5.7.1")
    t.wait_event("relay_rejected", client="::1")
    # IPv4 loopback is still trusted
    with t.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<z@other.example>"), 250, "2.1.5")
