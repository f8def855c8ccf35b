"""Relay modes: [relay] mode / trusted_networks / pop_window / percent_routing.

mode = allow_all | block_all | domains | addresses | domains_and_addresses
       (default) | pop_before_smtp.  Mail to local domains is accepted in every
mode; a client that may not relay gets `554 5.7.1 <rcpt>: Relay access denied`
and one `event=relay_rejected ... mode=<mode> reason=<why>` line per refused
RCPT, and every classic relay trick (relay_battery.BATTERY) is refused.
"""
import os
import re
import socket
import subprocess
import time

import pytest

from conftest import TERND, RawSMTP, _require, check_config, error_lines, expect, free_port, qid_of, simple_message, wait_until
from relay_battery import BATTERY

MODES = ["allow_all", "block_all", "domains", "addresses", "domains_and_addresses", "pop_before_smtp"]
TRUSTED = ["127.0.0.0/8"]      # 127.0.0.1 (the test client) is trusted
UNTRUSTED = ["10.0.0.0/8"]     # 127.0.0.1 is not

LOCAL_RCPT = "x@local.test"
RELAY_RCPT = "y@relay.test"
OTHER_RCPT = "z@other.example"

DENIED_RE = re.compile(r"^5\.7\.1 <(?P<rcpt>.*)>: Relay access denied$")


def relay_cfg(mode, trusted, **more):
    relay = {"trusted_networks": trusted}
    if mode is not None:
        relay["mode"] = mode
    relay.update(more)
    # the battery sends many refused/invalid commands over one connection
    return {"relay": relay, "smtp": {"max_errors": 1000}}


def rcpt_reply(c, rcpt, sender="a@b.test"):
    """MAIL, RCPT TO:<rcpt> (rcpt given with its brackets or without), RSET; returns the RCPT reply."""
    arg = rcpt if rcpt.startswith("<") else f"<{rcpt}>"
    expect(c.cmd(f"MAIL FROM:<{sender}>"), 250, "2.1.0")
    r = c.cmd(f"RCPT TO:{arg}")
    expect(c.cmd("RSET"), 250)
    return r


def expect_denied(r, rcpt):
    expect(r, 554, "5.7.1")
    assert len(r.lines) == 1, r
    m = DENIED_RE.match(r.lines[0])
    assert m, f"not '5.7.1 <rcpt>: Relay access denied': {r!r}"
    assert m.group("rcpt") == rcpt.strip("<>"), f"reply names {m.group('rcpt')!r}, sent {rcpt!r}: {r!r}"


def rejected(t, n, timeout=5):
    """Waits for exactly n relay_rejected lines (gives late lines a moment to show up)."""
    if n:
        wait_until(lambda: len(t.events("relay_rejected")) >= n, timeout, what=f"{n} relay_rejected lines\n{t.log()[-3000:]}")
    time.sleep(0.2)
    evs = t.events("relay_rejected")
    assert len(evs) == n, f"expected {n} relay_rejected lines, got {len(evs)}:\n" + "\n".join(map(str, evs))
    return evs


# --------------------------------------------------------------------------
# The mode matrix
# --------------------------------------------------------------------------

# mode -> trusted? -> (local, relay_domains, other) accepted?
MATRIX = {
    "allow_all":             {True: (1, 1, 1), False: (1, 1, 1)},
    "block_all":             {True: (1, 0, 0), False: (1, 0, 0)},
    "domains":               {True: (1, 1, 0), False: (1, 1, 0)},
    "addresses":             {True: (1, 1, 1), False: (1, 0, 0)},
    "domains_and_addresses": {True: (1, 1, 1), False: (1, 1, 0)},
    "pop_before_smtp":       {True: (1, 0, 0), False: (1, 0, 0)},  # nobody in the POP window
}


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "untrusted"])
@pytest.mark.parametrize("mode", MODES)
def test_mode_matrix(ternd_factory, mode, trusted):
    t = ternd_factory(relay_cfg(mode, TRUSTED if trusted else UNTRUSTED))
    want = MATRIX[mode][trusted]
    refused = []
    with t.raw() as c:
        expect(c.ehlo(), 250)
        for rcpt, ok in zip((LOCAL_RCPT, RELAY_RCPT, OTHER_RCPT), want):
            r = rcpt_reply(c, rcpt)
            if ok:
                expect(r, 250, "2.1.5")
            else:
                expect_denied(r, rcpt)
                refused.append(rcpt)
        expect(c.cmd("QUIT"), 221)
    evs = rejected(t, len(refused))
    for ev, rcpt in zip(evs, refused):
        assert ev["client"] == "127.0.0.1", ev
        assert ev["rcpt"].strip("<>") == rcpt, ev
        assert ev["mode"] == mode, ev
        assert ev.get("reason"), ev


@pytest.mark.parametrize("mode", MODES)
def test_mixed_transaction_keeps_accepted_recipients(ternd_factory, mode):
    """A refused RCPT does not end the transaction: the accepted ones are queued."""
    t = ternd_factory(relay_cfg(mode, UNTRUSTED))
    want = dict(zip((LOCAL_RCPT, RELAY_RCPT, OTHER_RCPT), MATRIX[mode][False]))
    with t.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        for rcpt, ok in want.items():
            r = c.cmd(f"RCPT TO:<{rcpt}>")
            expect(r, 250, "2.1.5") if ok else expect_denied(r, rcpt)
        qid = qid_of(expect(c.data(simple_message() + b".\r\n"), 250, "2.0.0"))
    env = {e["id"]: e for e in t.queue()}[qid]
    assert sorted(r["address"] for r in env["recipients"]) == sorted(r for r, ok in want.items() if ok)


def test_default_mode_is_domains_and_addresses(ternd_factory):
    t = ternd_factory(relay_cfg(None, UNTRUSTED))
    with t.raw() as c:
        expect(c.ehlo(), 250)
        expect(rcpt_reply(c, LOCAL_RCPT), 250, "2.1.5")
        expect(rcpt_reply(c, RELAY_RCPT), 250, "2.1.5")
        expect_denied(rcpt_reply(c, OTHER_RCPT), OTHER_RCPT)
    ev = rejected(t, 1)[0]
    assert ev["mode"] == "domains_and_addresses", ev


def test_default_trusted_networks_include_loopback(ternd_factory):
    t = ternd_factory({"relay": {"mode": "addresses"}})
    with t.raw() as c:
        expect(c.ehlo(), 250)
        expect(rcpt_reply(c, OTHER_RCPT), 250, "2.1.5")
    rejected(t, 0)


def test_allow_all_relays_for_untrusted_and_queues(ternd_factory):
    t = ternd_factory(relay_cfg("allow_all", []))
    with t.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        for rcpt in (OTHER_RCPT, "w@[192.0.2.1]", "v%evil.example@local.test"):
            expect(c.cmd(f"RCPT TO:<{rcpt}>"), 250, "2.1.5")
        qid = qid_of(expect(c.data(simple_message() + b".\r\n"), 250, "2.0.0"))
    assert qid in {e["id"] for e in t.queue()}
    rejected(t, 0)


def test_block_all_trusted_client_gets_no_tricks(ternd_factory):
    """block_all: even a trusted client may not relay, so %-hack / literal are refused."""
    t = ternd_factory(relay_cfg("block_all", TRUSTED))
    rcpts = ["u%evil.example@local.test", "u@[192.0.2.1]", "evil.example!u@local.test"]
    with t.raw() as c:
        expect(c.ehlo(), 250)
        for rcpt in rcpts:
            expect_denied(rcpt_reply(c, rcpt), rcpt)
    for ev in rejected(t, len(rcpts)):
        assert ev["mode"] == "block_all" and ev.get("reason"), ev


@pytest.mark.parametrize("mode", ["addresses", "domains_and_addresses", "allow_all"])
def test_relaying_client_may_use_tricks(ternd_factory, mode):
    """A client that may relay is not refused for the forms that are only tricks for others."""
    t = ternd_factory(relay_cfg(mode, TRUSTED))
    with t.raw() as c:
        expect(c.ehlo(), 250)
        for rcpt in ("u%evil.example@local.test", "u@[192.0.2.1]", "evil.example!u@local.test",
                     '"u@evil.example"@local.test'):
            expect(rcpt_reply(c, rcpt), 250, "2.1.5")
    rejected(t, 0)


# --------------------------------------------------------------------------
# The open-relay battery
# --------------------------------------------------------------------------

BATTERY_CASES = [
    ("block_all", UNTRUSTED),
    ("domains", UNTRUSTED),
    ("addresses", UNTRUSTED),
    ("domains_and_addresses", UNTRUSTED),
    ("pop_before_smtp", UNTRUSTED),
    # nobody relays here whatever the networks say
    ("block_all", TRUSTED),
    ("domains", TRUSTED),
    ("pop_before_smtp", TRUSTED),
]


def run_battery(t):
    """Every BATTERY form in its own transaction on one connection:
    ([(rcpt, note, reply)] accepted, [(rcpt, reply)] refused with 554,
    [(rcpt, reply)] refused otherwise)."""
    accepted, denied, other = [], [], []
    with t.raw() as c:
        expect(c.ehlo(), 250)
        for rcpt, note in BATTERY:
            r = rcpt_reply(c, rcpt)
            if 200 <= r.code < 300:
                accepted.append((rcpt, note, r))
            elif r.code == 554:
                denied.append((rcpt, r))
            else:
                other.append((rcpt, r))
        expect(c.cmd("QUIT"), 221)
    return accepted, denied, other


@pytest.mark.parametrize("mode,trusted", BATTERY_CASES,
                         ids=[f"{m}-{'trusted' if t == TRUSTED else 'untrusted'}" for m, t in BATTERY_CASES])
def test_battery_never_accepted(ternd_factory, mode, trusted):
    t = ternd_factory(relay_cfg(mode, trusted))
    accepted, denied, other = run_battery(t)
    assert not accepted, "open relay:\n" + "\n".join(f"  {a} ({n}) -> {r!r}" for a, n, r in accepted)
    for rcpt, r in denied:
        assert r.enhanced == "5.7.1", (rcpt, r)
        assert r.text.endswith(": Relay access denied"), (rcpt, r)
    for rcpt, r in other:
        assert r.code in (501, 553), (rcpt, r)
    assert len(denied) >= 20, f"only {len(denied)} refused with 554; others: {other}"
    evs = rejected(t, len(denied))
    for ev in evs:
        assert ev["client"] == "127.0.0.1" and ev["mode"] == mode and ev.get("reason"), ev


@pytest.mark.parametrize("mode", ["block_all", "domains", "domains_and_addresses"])
def test_battery_never_accepted_with_percent_routing(ternd_factory, mode):
    """percent_routing = true may route between local domains only: no battery form
    (all of which leave for evil.example or another host) may be accepted."""
    t = ternd_factory(relay_cfg(mode, UNTRUSTED, percent_routing=True))
    accepted, _, other = run_battery(t)
    for rcpt, r in other:
        assert r.code in (501, 553), (rcpt, r)
    assert not accepted, "open relay:\n" + "\n".join(f"  {a} ({n}) -> {r!r}" for a, n, r in accepted)


# The tricks named in the spec, towards the local domain, each with its own
# exact refusal (client may not relay: mode domains, untrusted).
TRICKS = [
    "u%evil.example@local.test",         # percent hack
    "evil.example!u@local.test",         # bang path
    '"u@evil.example"@local.test',       # quoted local part with @
    "u@[192.0.2.1]",                     # address literal of another host
    "u@[127.0.0.1]",                     # address literal of ourselves
]


@pytest.mark.parametrize("mode", ["block_all", "domains", "addresses", "domains_and_addresses", "pop_before_smtp"])
def test_tricks_refused_exact_reply_and_log(ternd_factory, mode):
    t = ternd_factory(relay_cfg(mode, UNTRUSTED))
    with t.raw() as c:
        expect(c.ehlo(), 250)
        for rcpt in TRICKS:
            expect_denied(rcpt_reply(c, rcpt), rcpt)
        # the trailing dot: either refused as syntax or as relay, never accepted
        r = rcpt_reply(c, "u@local.test.")
        assert r.code in (501, 553, 554), r
        n_extra = 1 if r.code == 554 else 0
        if r.code == 554:
            assert r.enhanced == "5.7.1", r
    evs = rejected(t, len(TRICKS) + n_extra)
    for ev, rcpt in zip(evs, TRICKS):
        assert ev["rcpt"] == rcpt, (ev, rcpt)
        assert ev["client"] == "127.0.0.1" and ev["mode"] == mode and ev.get("reason"), ev
    # the reasons tell the tricks apart
    assert len({ev["reason"] for ev in evs[:4]}) == 4, [ev["reason"] for ev in evs]


@pytest.mark.parametrize("mode", ["block_all", "domains", "addresses", "pop_before_smtp"])
def test_source_route_refused(ternd_factory, mode):
    t = ternd_factory(relay_cfg(mode, UNTRUSTED))
    with t.raw() as c:
        expect(c.ehlo(), 250)
        for route in ("<@local.test:u@evil.example>", "<@local.test,@relay.test:u@evil.example>"):
            r = rcpt_reply(c, route)
            expect(r, 554, "5.7.1")
            assert r.text.endswith(": Relay access denied"), r
    for ev in rejected(t, 2):
        assert ev["mode"] == mode and ev.get("reason"), ev


def test_a_source_route_to_a_local_mailbox_is_ignored_not_followed(ternd_factory):
    """RFC 5321 3.6.1 / Appendix C: the route is stripped and the final
    mailbox decides. Ending at a local mailbox, nothing is relayed: the
    message is queued for u@local.test, never for the hop."""
    t = ternd_factory(relay_cfg("domains", UNTRUSTED))
    with t.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250)
        expect(c.cmd("RCPT TO:<@evil.example:u@local.test>"), 250)
        expect(c.data(b"Subject: x\r\n\r\nx\r\n.\r\n"), 250)
    [queued] = wait_until(lambda: t.queue(), 10, what="the message in the queue")
    assert [r["address"] for r in queued["recipients"]] == ["u@local.test"], queued


# --------------------------------------------------------------------------
# percent_routing
# --------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["block_all", "domains", "addresses", "domains_and_addresses", "pop_before_smtp"])
def test_percent_routing_between_local_domains(ternd_factory, mode):
    t = ternd_factory(relay_cfg(mode, UNTRUSTED, percent_routing=True,
                                local_domains=["local.test", "other-local.test"]))
    with t.raw() as c:
        expect(c.ehlo(), 250)
        expect(rcpt_reply(c, "u%other-local.test@local.test"), 250, "2.1.5")
        expect(rcpt_reply(c, "u%OTHER-LOCAL.TEST@local.test"), 250, "2.1.5")
        expect(rcpt_reply(c, "u%local.test@other-local.test"), 250, "2.1.5")
        refused = ["u%evil.example@local.test",
                   "u%other-local.test%evil.example@local.test",   # second hop leaves
                   "u%other-local.test.evil.example@local.test",   # look-alike
                   "u%other-local.test@evil.example"]              # not ours at all
        for rcpt in refused:
            expect_denied(rcpt_reply(c, rcpt), rcpt)
    for ev in rejected(t, len(refused)):
        assert ev["mode"] == mode and ev.get("reason"), ev


@pytest.mark.parametrize("rcpt", [
    # local.test turns the last % into @: u%evil.example@other-local.test,
    # which other-local.test (also ours) turns into u@evil.example.
    "u%evil.example%other-local.test@local.test",
    "u%evil.example%local.test@local.test",
    "u%evil.example%local.test%other-local.test@local.test",
])
def test_percent_routing_multi_hop_leaving_is_refused(ternd_factory, rcpt):
    """percent_routing only routes between local domains: a chain of % hops that
    ends outside them is still a relay attempt, whichever hop leaves."""
    t = ternd_factory(relay_cfg("domains", UNTRUSTED, percent_routing=True,
                                local_domains=["local.test", "other-local.test"]))
    with t.raw() as c:
        expect(c.ehlo(), 250)
        expect_denied(rcpt_reply(c, rcpt), rcpt)
    rejected(t, 1)


def test_percent_routing_off_refuses_local_percent(ternd_factory):
    t = ternd_factory(relay_cfg("domains", UNTRUSTED, local_domains=["local.test", "other-local.test"]))
    with t.raw() as c:
        expect(c.ehlo(), 250)
        expect_denied(rcpt_reply(c, "u%other-local.test@local.test"), "u%other-local.test@local.test")
    rejected(t, 1)


def test_percent_routing_relay_domain_is_not_local(ternd_factory):
    """Only local domains count after %: a relay_domains target is still a trick."""
    t = ternd_factory(relay_cfg("domains_and_addresses", UNTRUSTED, percent_routing=True))
    with t.raw() as c:
        expect(c.ehlo(), 250)
        expect_denied(rcpt_reply(c, "u%relay.test@local.test"), "u%relay.test@local.test")
    rejected(t, 1)


# --------------------------------------------------------------------------
# POP-before-SMTP
# --------------------------------------------------------------------------

def pop_ternd(ternd_factory, trusted=UNTRUSTED, **more):
    return ternd_factory(relay_cfg("pop_before_smtp", trusted, **more))


def popauth(t, *args):
    r = t.ternctl("popauth", *args)
    assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
    return r.stdout


def try_relay(t, rcpt=OTHER_RCPT, host="127.0.0.1", port=None):
    with RawSMTP(host, port or t.port) as c:
        expect(c.reply(), 220)
        expect(c.ehlo(), 250)
        return rcpt_reply(c, rcpt)


def test_pop_window_lifecycle(ternd_factory):
    t = pop_ternd(ternd_factory)
    expect_denied(try_relay(t), OTHER_RCPT)
    assert popauth(t, "list").strip() == ""

    popauth(t, "add", "127.0.0.1", "3s")
    added = time.monotonic()
    listing = popauth(t, "list")
    assert "127.0.0.1" in listing, listing
    expect(try_relay(t), 250, "2.1.5")
    expect(try_relay(t, RELAY_RCPT), 250, "2.1.5")
    # in the window a client may relay, so it may use the tricks too
    expect(try_relay(t, "u%evil.example@local.test"), 250, "2.1.5")
    expect(try_relay(t, LOCAL_RCPT), 250, "2.1.5")

    time.sleep(max(0, 3.5 - (time.monotonic() - added)))
    wait_until(lambda: try_relay(t).code == 554, 5, what="the POP window to expire")
    expect_denied(try_relay(t), OTHER_RCPT)
    assert "127.0.0.1" not in popauth(t, "list")
    expect(try_relay(t, LOCAL_RCPT), 250, "2.1.5")
    evs = t.events("relay_rejected")
    assert evs and all(ev["mode"] == "pop_before_smtp" and ev.get("reason") for ev in evs), evs
    t.wait_event("popauth_added", client="127.0.0.1")


def test_pop_del_ends_window_at_once(ternd_factory):
    t = pop_ternd(ternd_factory)
    popauth(t, "add", "127.0.0.1", "10")
    listing = popauth(t, "list")
    assert "127.0.0.1" in listing, listing
    expect(try_relay(t), 250, "2.1.5")
    popauth(t, "del", "127.0.0.1")
    expect_denied(try_relay(t), OTHER_RCPT)
    assert "127.0.0.1" not in popauth(t, "list")
    # deleting again is an error
    r = t.ternctl("popauth", "del", "127.0.0.1")
    assert r.returncode != 0, r


def test_pop_window_default_minutes(ternd_factory):
    """add without MINUTES uses relay.pop_window."""
    t = pop_ternd(ternd_factory, pop_window=20)
    popauth(t, "add", "127.0.0.1")
    listing = popauth(t, "list")
    m = re.search(r"\((\d+) s left\)", listing)
    if m:
        assert 20 * 60 - 10 <= int(m.group(1)) <= 20 * 60, listing
    expect(try_relay(t), 250, "2.1.5")


def test_pop_window_is_per_address(ternd_factory):
    t = pop_ternd(ternd_factory)
    popauth(t, "add", "127.0.0.2", "5")
    expect_denied(try_relay(t), OTHER_RCPT)
    ev = rejected(t, 1)[0]
    assert ev["client"] == "127.0.0.1" and ev["mode"] == "pop_before_smtp", ev


@pytest.mark.parametrize("args", [("add", "not-an-ip"), ("add", "127.0.0.1", "0"),
                                  ("add", "127.0.0.1", "soon"), ("del", "127.0.0.9")])
def test_popauth_bad_arguments(ternd_factory, args):
    t = pop_ternd(ternd_factory)
    r = t.ternctl("popauth", *args)
    assert r.returncode != 0, (args, r.stdout, r.stderr)
    assert r.stderr.strip(), r
    expect_denied(try_relay(t), OTHER_RCPT)


def test_pop_window_does_not_matter_in_other_modes(ternd_factory):
    t = ternd_factory(relay_cfg("domains", UNTRUSTED))
    t.ternctl("popauth", "add", "127.0.0.1", "5")
    # ternctl may refuse (not in pop mode) or accept; either way no relaying
    expect_denied(try_relay(t), OTHER_RCPT)


# --------------------------------------------------------------------------
# IPv6
# --------------------------------------------------------------------------

def v6_ternd(ternd_factory, relay):
    try:
        port6 = free_port(socket.AF_INET6, "::1")
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    t = ternd_factory({"relay": relay, "smtp": {"max_errors": 1000}}, start=False)
    t.extra_listen = [f"[::1]:{port6}"]
    t.start()
    return t, port6


@pytest.mark.parametrize("mode", ["addresses", "domains_and_addresses"])
def test_ipv6_trusted_relays_from_v6_only(ternd_factory, mode):
    t, port6 = v6_ternd(ternd_factory, {"mode": mode, "trusted_networks": ["::1/128"]})
    expect(try_relay(t, host="::1", port=port6), 250, "2.1.5")
    expect_denied(try_relay(t), OTHER_RCPT)
    ev = rejected(t, 1)[0]
    assert ev["client"] == "127.0.0.1" and ev["mode"] == mode, ev
    # and the other way round over the v6 listener: local mail still fine
    expect(try_relay(t, LOCAL_RCPT, host="::1", port=port6), 250, "2.1.5")


def test_ipv6_untrusted_refused_and_logged(ternd_factory):
    t, port6 = v6_ternd(ternd_factory, {"mode": "addresses", "trusted_networks": ["127.0.0.0/8"]})
    expect_denied(try_relay(t, host="::1", port=port6), OTHER_RCPT)
    expect(try_relay(t), 250, "2.1.5")
    ev = rejected(t, 1)[0]
    assert ev["client"] == "::1" and ev["mode"] == "addresses", ev


def test_ipv6_mapped_v4_network_does_not_trust_v6(ternd_factory):
    t, port6 = v6_ternd(ternd_factory, {"mode": "addresses", "trusted_networks": ["::ffff:127.0.0.0/104"]})
    expect_denied(try_relay(t, host="::1", port=port6), OTHER_RCPT)


def test_ipv6_pop_window(ternd_factory):
    t, port6 = v6_ternd(ternd_factory, {"mode": "pop_before_smtp", "trusted_networks": ["::1/128"]})
    expect_denied(try_relay(t, host="::1", port=port6), OTHER_RCPT)
    popauth(t, "add", "::1", "5")
    assert "::1" in popauth(t, "list")
    expect(try_relay(t, host="::1", port=port6), 250, "2.1.5")
    expect_denied(try_relay(t), OTHER_RCPT)
    popauth(t, "del", "::1")
    expect_denied(try_relay(t, host="::1", port=port6), OTHER_RCPT)


# --------------------------------------------------------------------------
# Configuration errors
# --------------------------------------------------------------------------

@pytest.mark.parametrize("text,line,key", [
    ('[relay]\nmode = "open"\n', 2, "relay.mode"),
    ('[relay]\nmode = "Allow_All"\n', 2, "relay.mode"),
    ('[relay]\nmode = ""\n', 2, "relay.mode"),
    ('[relay]\nmode = 1\n', 2, "relay.mode"),
    ('[relay]\nlocal_domains = ["x.test"]\npop_window = 10\n', 3, "relay.pop_window"),
    ('[relay]\npop_window = 14\n', 2, "relay.pop_window"),
    ('[relay]\npop_window = 65536\n', 2, "relay.pop_window"),
    ('[relay]\npop_window = 70000\n', 2, "relay.pop_window"),
    ('[relay]\npop_window = -30\n', 2, "relay.pop_window"),
    ('[relay]\npop_window = "30m"\n', 2, "relay.pop_window"),
    ('[relay]\npercent_routing = "yes"\n', 2, "relay.percent_routing"),
    ('[restrictions]\ndeny = ["10.0.0.0/33"]\n', 2, "restrictions.deny"),
    ('[relay]\ntrusted_networks = ["not-a-net"]\n', 2, "relay.trusted_networks"),
    ('[relay]\ntrusted_networks = ["::1/129"]\n', 2, "relay.trusted_networks"),
    ('[relay]\ntrusted_networks = ["127.0.0.0/8", "300.0.0.0/8"]\n', 2, "relay.trusted_networks"),
])
def test_bad_relay_config(workdir, text, line, key):
    r = check_config(workdir, text)
    assert r.returncode != 0, (r.returncode, r.stdout, r.stderr)
    lines = error_lines(r)
    assert any(f"line {line}" in l and key in l for l in lines), r.stderr


@pytest.mark.parametrize("text", [f'[relay]\nmode = "{m}"\n' for m in MODES] + [
    '[relay]\npop_window = 15\n',
    '[relay]\npop_window = 65535\n',
    '[relay]\npercent_routing = true\n',
    '[relay]\ntrusted_networks = []\n',
    '[relay]\ntrusted_networks = ["10.0.0.0/8", "::1/128", "192.0.2.7"]\n',
])
def test_good_relay_config(workdir, text):
    r = check_config(workdir, text)
    assert r.returncode == 0, (r.stdout, r.stderr)


def test_start_refused_on_bad_mode(workdir):
    _require(TERND)
    path = os.path.join(workdir, "bad.toml")
    with open(path, "w") as f:
        f.write('[relay]\nmode = "open"\n')
    r = subprocess.run([TERND, "--config", path], capture_output=True, text=True, timeout=30, cwd=workdir)
    assert r.returncode != 0
    assert "line 2" in r.stderr and "relay.mode" in r.stderr, r.stderr
