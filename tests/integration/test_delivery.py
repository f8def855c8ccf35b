"""Delivery: ternd takes queued mail to its next hop.

Real parts only: ternd, dnsmasq serving MX and A records for .test domains on
a loopback port, and tern-sink instances on 127.0.0.x addresses as receiving
servers (with fault injection where a test needs a misbehaving server).
MX hosts are reached on the port `delivery.smtp_port` names, since tests
cannot bind port 25.
"""
import json
import os
import signal
import smtplib
import subprocess
import time

import pytest

from conftest import (active_messages, delivering_ternd, free_port, hold_backlog, make_cert, send, sink_on, wait_messages,
                      wait_until)

def test_delivers_to_the_best_mx(ternd_factory, dns_factory, sink_factory):
    port = free_port()
    dns = dns_factory("--mx-host=dest.test,mx1.dest.test,10", "--mx-host=dest.test,mx2.dest.test,20",
                      "--host-record=mx1.dest.test,127.0.0.2", "--host-record=mx2.dest.test,127.0.0.3")
    best = sink_on(sink_factory, "127.0.0.2", port)
    second = sink_on(sink_factory, "127.0.0.3", port)
    t = delivering_ternd(ternd_factory, dns, port)
    assert t.wait_event("delivery_started")["dns"] == dns.server
    send(t, ["bob@dest.test"])
    wait_messages(best, 1)
    ev = t.wait_event("delivered", rcpt="bob@dest.test")
    assert "mx1.dest.test" in ev["relay"]
    t.wait_event("finished", qid=ev["qid"], result="delivered")
    assert second.report()["messages"] == 0
    wait_until(lambda: t.queue() == [], 10, what="an empty queue")


def test_next_mx_when_the_first_refuses_the_connection(ternd_factory, dns_factory, sink_factory):
    port = free_port()
    dns = dns_factory("--mx-host=dest.test,mx1.dest.test,10", "--mx-host=dest.test,mx2.dest.test,20",
                      "--host-record=mx1.dest.test,127.0.0.4", "--host-record=mx2.dest.test,127.0.0.3")
    second = sink_on(sink_factory, "127.0.0.3", port)
    t = delivering_ternd(ternd_factory, dns, port)
    send(t, ["bob@dest.test"])
    wait_messages(second, 1)
    t.wait_event("connect_failed", destination="dest.test")
    ev = t.wait_event("delivered", rcpt="bob@dest.test")
    assert "mx2.dest.test" in ev["relay"]


def test_next_mx_on_a_4xx_greeting(ternd_factory, dns_factory, sink_factory):
    port = free_port()
    dns = dns_factory("--mx-host=dest.test,mx1.dest.test,10", "--mx-host=dest.test,mx2.dest.test,20",
                      "--host-record=mx1.dest.test,127.0.0.2", "--host-record=mx2.dest.test,127.0.0.3")
    busy = sink_on(sink_factory, "127.0.0.2", port, "--fault", "banner=421")
    second = sink_on(sink_factory, "127.0.0.3", port)
    t = delivering_ternd(ternd_factory, dns, port)
    send(t, ["bob@dest.test"])
    wait_messages(second, 1)
    assert busy.report()["messages"] == 0
    assert t.wait_event("connect_failed", destination="dest.test")["phase"] == "greeting"


def test_implicit_mx(ternd_factory, dns_factory, sink_factory):
    port = free_port()
    dns = dns_factory("--host-record=plain.test,127.0.0.2")
    s = sink_on(sink_factory, "127.0.0.2", port)
    t = delivering_ternd(ternd_factory, dns, port)
    send(t, ["bob@plain.test"])
    wait_messages(s, 1)


@pytest.mark.parametrize("domain,records,dsn", [
    ("null.test", ["--mx-host=null.test,.,0"], "5.1.10"),
    ("missing.test", [], "5.1.2"),
])
def test_permanent_dns_failures_fail_at_once(ternd_factory, dns_factory, domain, records, dsn):
    dns = dns_factory(*records)
    t = delivering_ternd(ternd_factory, dns, free_port())
    send(t, [f"bob@{domain}"])
    ev = t.wait_event("undeliverable", rcpt=f"bob@{domain}")
    assert ev["dsn"] == dsn, ev
    t.wait_event("finished", qid=ev["qid"], result="failed")
    # Only the failure notice to the sender may be left.
    wait_until(lambda: ev["qid"] not in [q["id"] for q in t.queue()], 10, what="the message to leave the queue")


def test_servfail_is_temporary(ternd_factory, dns_factory, servfail):
    dns = dns_factory(f"--server=/broken.test/127.0.0.1#{servfail.port}")
    t = delivering_ternd(ternd_factory, dns, free_port())
    send(t, ["bob@broken.test"])
    ev = t.wait_event("deferred", rcpt="bob@broken.test")
    assert ev["dsn"].startswith("4."), ev
    t.wait_event("retry1", qid=ev["qid"])
    assert servfail.queries > 0


def test_mx_pointing_back_at_us_is_a_loop(ternd_factory, dns_factory):
    dns = dns_factory("--mx-host=loop.test,mx.loop.test,10", "--host-record=mx.loop.test,127.0.0.1")
    t = delivering_ternd(ternd_factory, dns, free_port())
    send(t, ["bob@loop.test"])
    ev = t.wait_event("undeliverable", rcpt="bob@loop.test")
    assert ev["dsn"] == "5.4.6", ev


def test_partial_delivery_retries_only_the_deferred_recipient(ternd_factory, dns_factory, sink_factory):
    port = free_port()
    dns = dns_factory("--host-record=dest.test,127.0.0.2")
    s = sink_on(sink_factory, "127.0.0.2", port, "--fault", "rcpt=550:0.5")
    t = delivering_ternd(ternd_factory, dns, port)
    send(t, ["a@dest.test", "b@dest.test"])
    wait_messages(s, 1)
    qid = t.wait_event("received")["qid"]
    events = wait_until(lambda: len(evs := [e for e in t.events() if e.get("event") in ("delivered", "undeliverable")
                                            and e.get("qid") == qid]) == 2 and evs, 10, what="two outcomes")
    assert sorted(e["event"] for e in events) == ["delivered", "undeliverable"]
    assert s.report()["recipients"] == 1
    t.wait_event("finished", qid=qid, result="failed")


def test_retry_ladder_to_expiry(ternd_factory, dns_factory, sink_factory):
    port = free_port()
    dns = dns_factory("--host-record=slow.test,127.0.0.2")
    sink_on(sink_factory, "127.0.0.2", port, "--fault", "rcpt=451")
    t = delivering_ternd(ternd_factory, dns, port,
                         retry={"first": {"count": 2, "interval": "1s"}, "second": {"interval": "2s"},
                                "max_age": "7s"})
    send(t, ["bob@slow.test"])
    ev = t.wait_event("expired", timeout=30)
    kinds = [e["event"] for e in t.events() if e.get("qid") == ev["qid"] and e.get("event") in
             ("retry1", "retry2", "expired")]
    assert kinds[:3] == ["retry1", "retry1", "retry2"], kinds
    assert kinds[-1] == "expired"
    failed = t.wait_event("finished", qid=ev["qid"])
    assert failed["result"] == "expired"


def test_one_connection_carries_many_messages(ternd_factory, dns_factory, sink_factory):
    port = free_port()
    dns = dns_factory("--host-record=dest.test,127.0.0.2")
    s = sink_on(sink_factory, "127.0.0.2", port, "--delay", "dot=100")
    t = delivering_ternd(ternd_factory, dns, port, delivery={"max_per_destination": 1})
    for i in range(6):
        send(t, [f"u{i}@dest.test"])
    report = wait_messages(s, 6)
    assert report["connections"] == 1, report


def test_transport_table_overrides_mx(ternd_factory, dns_factory, sink_factory):
    port = free_port()
    dns = dns_factory("--host-record=corp.test,127.0.0.3")
    s = sink_on(sink_factory, "127.0.0.2", port)
    t = delivering_ternd(ternd_factory, dns, port,
                         routing={"transport": [{"domain": "*.corp.test", "next_hop": f"[127.0.0.2]:{port}"}]})
    send(t, ["bob@eu.corp.test"])
    wait_messages(s, 1)
    assert t.wait_event("delivered", rcpt="bob@eu.corp.test")["relay"].endswith(f"[127.0.0.2:{port}]")


def test_firewall_mode_sends_everything_through_the_router(ternd_factory, dns_factory, sink_factory):
    port = free_port()
    dns = dns_factory("--host-record=dest.test,127.0.0.3")
    router = sink_on(sink_factory, "127.0.0.2", port)
    direct = sink_on(sink_factory, "127.0.0.3", port)
    t = delivering_ternd(ternd_factory, dns, port, routing={"router": f"[127.0.0.2]:{port}", "firewall": True})
    send(t, ["bob@dest.test"])
    wait_messages(router, 1)
    assert direct.report()["messages"] == 0


def test_router_is_the_fallback_when_dns_finds_no_route(ternd_factory, dns_factory, sink_factory):
    port = free_port()
    dns = dns_factory()
    router = sink_on(sink_factory, "127.0.0.2", port)
    t = delivering_ternd(ternd_factory, dns, port, routing={"router": f"[127.0.0.2]:{port}"})
    send(t, ["bob@unknown.test"])
    wait_messages(router, 1)
    t.wait_event("fallback", router="[127.0.0.2]")


def test_sigkill_during_delivery_loses_nothing(ternd_factory, dns_factory, sink_factory, workdir):
    port = free_port()
    dns = dns_factory("--host-record=dest.test,127.0.0.2")
    maildir = os.path.join(workdir, "maildir")
    s = sink_on(sink_factory, "127.0.0.2", port, "--maildir", maildir, "--delay", "dot=30")
    t = delivering_ternd(ternd_factory, dns, port, delivery={"max_per_destination": 2})
    rcpts = [f"u{i}@dest.test" for i in range(40)]
    for r in rcpts:
        send(t, [r])
    wait_until(lambda: s.report()["messages"] >= 5, 20, what="delivery under way")
    t.proc.send_signal(signal.SIGKILL)
    t.proc.wait(10)
    t.start(keep_port=True)
    wait_until(lambda: t.queue() == [], 60, what="the queue to drain after the restart")
    delivered = []
    for name in os.listdir(os.path.join(maildir, "new")):
        with open(os.path.join(maildir, "new", name), "rb") as f:
            for line in f.read().splitlines():
                if line.startswith(b"X-Tern-Sink-Rcpt: <"):
                    delivered.append(line[len(b"X-Tern-Sink-Rcpt: <"):-1].decode())
    # At least once: every recipient arrived; a message in flight at the kill
    # may have arrived twice.
    assert set(delivered) == set(rcpts), sorted(set(rcpts) - set(delivered))
    assert len(delivered) >= len(rcpts)


def deferred_ternd(ternd_factory, dns, port, **sections):
    """A ternd whose first retry is far away: only a flush brings the mail back soon."""
    retry = {"first": {"count": 3, "interval": "90m"}}
    return delivering_ternd(ternd_factory, dns, port, retry=retry, **sections)


def test_flush_retries_a_domain_now(ternd_factory, dns_factory, sink_factory):
    port = free_port()
    dns = dns_factory("--host-record=later.test,127.0.0.2", "--host-record=other.test,127.0.0.2")
    t = deferred_ternd(ternd_factory, dns, port)
    send(t, ["bob@later.test"])
    send(t, ["eve@other.test"])
    t.wait_event("retry1", timeout=15)
    wait_until(lambda: len(t.events("retry1")) == 2, 15, what="both messages in retry1")
    s = sink_on(sink_factory, "127.0.0.2", port)
    r = t.ternctl("flush", "later.test")
    assert r.returncode == 0, r.stderr
    assert "1 message to be tried now" in r.stdout, r.stdout
    wait_messages(s, 1)
    t.wait_event("delivered", rcpt="bob@later.test")
    time.sleep(1)
    assert s.report()["messages"] == 1  # other.test waits for its retry
    assert [m["queue"] for m in t.queue()] == ["retry1"]
    r = t.ternctl("flush")
    assert "1 message to be tried now" in r.stdout, r.stdout
    wait_messages(s, 2)


def test_etrn_for_configured_domains_only(ternd_factory, dns_factory, sink_factory):
    port = free_port()
    dns = dns_factory("--host-record=branch.test,127.0.0.2")
    t = deferred_ternd(ternd_factory, dns, port, routing={"etrn_domains": ["branch.test"]})
    send(t, ["bob@branch.test"])
    t.wait_event("retry1", timeout=15)
    s = sink_on(sink_factory, "127.0.0.2", port)
    with smtplib.SMTP("127.0.0.1", t.port, timeout=10) as c:
        code, msg = c.ehlo("client.test")
        assert b"ETRN" in msg
        assert c.docmd("ETRN", "elsewhere.test")[0] == 459
        assert c.docmd("ETRN", "#queue")[0] == 458
        assert c.docmd("ETRN")[0] == 501
        code, msg = c.docmd("ETRN", "branch.test")
        assert code == 253, msg
        assert b"1 pending messages" in msg
    wait_messages(s, 1)
    with smtplib.SMTP("127.0.0.1", t.port, timeout=10) as c:
        c.ehlo("client.test")
        wait_until(lambda: t.queue() == [], 10, what="an empty queue")
        assert c.docmd("ETRN", "branch.test")[0] == 251


def test_hold_and_release_a_domain(ternd_factory, dns_factory, sink_factory):
    port = free_port()
    dns = dns_factory("--host-record=held.test,127.0.0.2", "--host-record=free.test,127.0.0.2")
    s = sink_on(sink_factory, "127.0.0.2", port)
    t = delivering_ternd(ternd_factory, dns, port)
    r = t.ternctl("hold-domain", "Held.test")
    assert r.returncode == 0, r.stderr
    send(t, ["a@held.test", "b@free.test"])
    ev = t.wait_event("on_hold")
    assert "held.test" in ev["reason"], ev
    assert s.report()["recipients"] == 1  # free.test went, held.test waits
    [msg] = t.queue()
    assert msg["queue"] == "hold"
    # The held set survives a restart.
    t.stop()
    t.start(keep_port=True)
    send(t, ["c@held.test"])
    wait_until(lambda: len(t.queue()) == 2, 10, what="the second message held")
    r = t.ternctl("release-domain", "held.test")
    assert r.returncode == 0, r.stderr
    assert "2 messages to be tried now" in r.stdout, r.stdout
    wait_until(lambda: s.report()["recipients"] == 3, 15, what="the held recipients delivered")
    wait_until(lambda: t.queue() == [], 10, what="an empty queue")


def test_smarthost_with_auth(ternd_factory, dns_factory, workdir):
    """Firewall mode through a router that wants AUTH (aiosmtpd: a server
    nobody here wrote)."""
    port = free_port()
    log = os.path.join(workdir, "auth.log")
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "aiosmtpd_auth_server.py")
    server = subprocess.Popen(["/usr/bin/python3", script, "--port", str(port), "--user", "relay-user",
                               "--password", "s3cret", "--log", log],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "listening on" in server.stdout.readline()
        dns = dns_factory()
        t = delivering_ternd(ternd_factory, dns, free_port(),
                             routing={"router": f"[127.0.0.1]:{port}", "firewall": True,
                                      "router_user": "relay-user", "router_password": "s3cret",
                                      "router_tls": "none"})
        send(t, ["bob@far.test"])
        t.wait_event("delivered", rcpt="bob@far.test")
        records = [json.loads(line) for line in open(log)]
        assert any(r.get("event") == "message" and r["authenticated"] and r["rcpt_tos"] == ["bob@far.test"]
                   for r in records), records
    finally:
        server.terminate()
        server.wait(10)


def test_a_connection_limit_holds_mail_back_as_resource_busy(ternd_factory, dns_factory, sink_factory):
    port = free_port()
    dns = dns_factory("--host-record=dest.test,127.0.0.2")
    s = sink_on(sink_factory, "127.0.0.2", port, "--delay", "dot=300")
    t = delivering_ternd(ternd_factory, dns, port, delivery={"max_per_destination": 1})
    for i in range(3):
        send(t, [f"u{i}@dest.test"])
    wait_messages(s, 3)
    busy = t.events("resource_busy")
    assert busy and busy[0]["limit"] == "max_per_destination", busy
    # Held back in memory and sent as soon as the connection was free: never a retry queue.
    assert not t.events("retry1")


def test_resource_busy_is_logged_once_per_held_back_message(ternd_factory, dns_factory, sink_factory):
    """One line per message a limit holds back, however many times the
    destination is looked at again: on every new message and every closed
    connection (max_messages_per_connection = 1 closes one after each)."""
    port = free_port()
    dns = dns_factory("--host-record=dest.test,127.0.0.2")
    s = sink_on(sink_factory, "127.0.0.2", port, "--delay", "dot=200")
    t = delivering_ternd(ternd_factory, dns, port,
                         delivery={"max_per_destination": 1, "max_messages_per_connection": 1})
    # A backlog that reaches the engine at once: held, then released.
    hold_backlog(t, "dest.test", [f"early{i}@dest.test" for i in range(5)])
    r = t.ternctl("release-domain", "dest.test")
    assert r.returncode == 0, r.stderr
    # More while the backlog is being worked off (a second at least: 5 × 200 ms).
    t.wait_event("delivered")
    for i in range(3):
        send(t, [f"late{i}@dest.test"])
    wait_messages(s, 8)
    wait_until(lambda: t.queue() == [], 10, what="an empty queue")
    busy = [e["qid"] for e in t.events("resource_busy")]
    assert len(busy) == len(set(busy)), busy
    qid_of_rcpt = {e["rcpt"]: e["qid"] for e in t.events("delivered")}
    early = {qid_of_rcpt[f"early{i}@dest.test"] for i in range(5)}
    late = {qid_of_rcpt[f"late{i}@dest.test"] for i in range(3)}
    # The early ones but the one the first connection takes; the late ones,
    # which joined a queue partly worked off, all.
    assert len(early & set(busy)) >= 4 and late <= set(busy), (busy, early, late)
    assert not t.events("retry1")


def test_active_set_is_bounded(ternd_factory, dns_factory, sink_factory):
    """delivery.active_limit: a backlog larger than the active set is taken a
    part at a time; the rest waits in the spool, and all of it leaves."""
    port = free_port()
    dns = dns_factory("--host-record=dest.test,127.0.0.2")
    s = sink_on(sink_factory, "127.0.0.2", port, "--delay", "dot=100")
    t = delivering_ternd(ternd_factory, dns, port,
                         delivery={"active_limit": 3, "active_per_destination": 0, "max_per_destination": 1})
    hold_backlog(t, "dest.test", [f"r{i}@dest.test" for i in range(12)])
    assert t.ternctl("release-domain", "dest.test").returncode == 0
    seen = []
    deadline = time.monotonic() + 30
    while s.report()["messages"] < 12 and time.monotonic() < deadline:
        seen.append(active_messages(t))
        time.sleep(0.05)
    wait_messages(s, 12)
    assert max(seen) <= 3, seen
    # The log says the same, whatever the sampling missed: messages taken and
    # not yet delivered, in log order, never more than the bound.
    events = t.events()
    released = next(i for i, e in enumerate(events) if e["event"] == "domain_released")
    active, most = set(), 0
    for e in events[released:]:
        if e["event"] == "taken":
            active.add(e["qid"])
        elif e["event"] == "delivered":
            active.discard(e["qid"])
        most = max(most, len(active))
    assert most == 3, most
    wait_until(lambda: t.queue() == [], 10, what="an empty queue")
    assert active_messages(t) == 0


def test_fresh_mail_is_not_queued_behind_a_released_backlog(ternd_factory, dns_factory, sink_factory):
    """Mail that arrives while a released backlog drains is taken at once,
    not after the backlog: released mail waits in retry1, and the scanner
    takes incoming and the retry queues by turns (as Postfix's queue manager
    takes incoming and deferred mail)."""
    port = free_port()
    dns = dns_factory("--host-record=dest.test,127.0.0.2", "--host-record=fresh.test,127.0.0.3")
    backlog_sink = sink_on(sink_factory, "127.0.0.2", port, "--delay", "dot=100")
    fresh_sink = sink_on(sink_factory, "127.0.0.3", port)
    t = delivering_ternd(ternd_factory, dns, port,
                         delivery={"active_limit": 3, "active_per_destination": 0, "max_per_destination": 1})
    hold_backlog(t, "dest.test", [f"r{i}@dest.test" for i in range(16)])
    assert t.ternctl("release-domain", "dest.test").returncode == 0
    t.wait_event("delivered", rcpt="r0@dest.test")
    send(t, ["new@fresh.test"])
    wait_messages(fresh_sink, 1)
    # 16 × 100 ms one at a time: most of the backlog is still to go.
    assert backlog_sink.report()["messages"] <= 8, backlog_sink.report()
    events = t.events()
    fresh_taken = next(e for e in events if e["event"] == "taken" and e["queue"] == "incoming"
                       and e["qid"] == t.wait_event("delivered", rcpt="new@fresh.test")["qid"])
    released = [e for e in events if e["event"] == "taken" and e["queue"] == "retry1"]
    assert released and fresh_taken, events
    wait_messages(backlog_sink, 16)
    wait_until(lambda: t.queue() == [], 10, what="an empty queue")


def test_a_slow_destination_holds_only_its_share_of_the_active_set(ternd_factory, dns_factory, sink_factory):
    """delivery.active_per_destination: a destination that is alive but slow
    (one connection, 200 ms a message) with a backlog in `incoming` takes at
    most its share of the active set; its other messages go back to the
    queue, due later (no attempt counted), so mail to another destination
    that arrives behind the backlog is delivered while the backlog drains.
    Without the share the first 20 slow messages would fill the active set
    and the fast mail would wait until 40 - 20 of them had left."""
    port = free_port()
    dns = dns_factory("--host-record=slow.test,127.0.0.2", "--host-record=fast.test,127.0.0.3")
    slow = sink_on(sink_factory, "127.0.0.2", port, "--delay", "dot=200")
    fast = sink_on(sink_factory, "127.0.0.3", port)
    t = delivering_ternd(ternd_factory, dns, port,
                         delivery={"active_limit": 20, "active_per_destination": 5, "max_per_destination": 1})
    backlog = [f"s{i}@slow.test" for i in range(40)]
    for rcpt in backlog:
        send(t, [rcpt])
    t.wait_event("destination_at_share", destination="slow.test")
    for i in range(5):
        send(t, [f"f{i}@fast.test"])
    send(t, ["both-slow@slow.test", "both-fast@fast.test"])  # waits for the slow share, then goes
    wait_messages(fast, 5)
    slow_at_fast = slow.report()["messages"]
    assert slow_at_fast < 40 - 20, slow_at_fast
    seen = [active_messages(t)]
    deadline = time.monotonic() + 40
    while slow.report()["messages"] < len(backlog) + 1 and time.monotonic() < deadline:
        seen.append(active_messages(t))
        time.sleep(0.05)
    wait_messages(slow, len(backlog) + 1)
    wait_messages(fast, 6)
    wait_until(lambda: t.queue() == [], 10, what="an empty queue")
    assert max(seen) <= 20, seen

    events = t.events()
    # Every message delivered once, none deferred: a put-back is no attempt.
    delivered = [e["rcpt"] for e in events if e["event"] == "delivered"]
    assert sorted(delivered) == sorted(backlog + [f"f{i}@fast.test" for i in range(5)]
                                       + ["both-slow@slow.test", "both-fast@fast.test"]), delivered
    assert not t.events("deferred") and not t.events("retry1"), t.events("deferred")
    assert all(e["attempts"] == "0" for e in t.events("taken")), t.events("taken")
    # In log order, slow.test never held more than its share.
    domain_of = {e["qid"]: e["rcpt"].split("@")[1] for e in events if e["event"] == "delivered"}
    held, most = set(), 0
    for e in events:
        if e["event"] == "taken" and domain_of.get(e["qid"]) == "slow.test":
            held.add(e["qid"])
        elif e["event"] == "finished":
            held.discard(e["qid"])
        most = max(most, len(held))
    assert most == 5, most
    # Logged per episode, not per message put back.
    stats = dict(line.split() for line in t.ternctl("stats").stdout.splitlines())
    put_back = int(stats["active_put_back"])
    episodes = t.events("destination_at_share")
    ended = t.events("destination_share_ended")
    assert put_back >= len(backlog) - 5, stats
    assert 1 <= len(episodes) <= len(ended) and len(episodes) * 5 < put_back, (episodes, put_back)
    assert sum(int(e["put_back"]) for e in ended) == put_back, (ended, put_back)
    assert int(stats["destinations_at_share"]) == 0, stats


def test_a_dead_destination_is_suspended_and_does_not_block_another(ternd_factory, dns_factory, sink_factory):
    """A destination none of whose hosts answers (here: it never greets) is
    tried once per connection slot, then suspended: the rest of its mail is
    deferred at once ("delivery temporarily suspended", as Postfix says), so
    it does not keep the active set full of messages waiting for timeouts
    while mail to another destination waits behind them. A flush ends the
    suspension."""
    port = free_port()
    dns = dns_factory("--host-record=dead.test,127.0.0.2", "--host-record=alive.test,127.0.0.3")
    mute = sink_on(sink_factory, "127.0.0.2", port, "--delay", "banner=600000")
    alive = sink_on(sink_factory, "127.0.0.3", port)
    t = delivering_ternd(ternd_factory, dns, port,
                         delivery={"active_limit": 4, "max_per_destination": 2, "greeting_timeout": "2s"},
                         retry={"first": {"count": 3, "interval": "90m"}})
    dead = [f"d{i}@dead.test" for i in range(12)]
    for rcpt in dead:
        send(t, [rcpt])
    send(t, ["bob@alive.test"])
    wait_messages(alive, 1)
    wait_until(lambda: len(t.events("deferred")) == len(dead), 20, what="every dead.test recipient deferred")
    # One try per connection slot; the others never waited for a greeting.
    tries = t.events("connect_failed")
    assert 1 <= len(tries) <= 2 and all(e["phase"] == "greeting" for e in tries), tries
    [suspended] = t.events("destination_suspended")
    assert suspended["destination"] == "dead.test" and suspended["seconds"] == "5400", suspended
    reasons = [e["reply"] for e in t.events("deferred")]
    assert sum("delivery temporarily suspended" in r for r in reasons) >= len(dead) - 4, reasons
    assert all(m["queue"] == "retry1" for m in t.queue()), t.queue()
    assert mute.report()["messages"] == 0
    # A flush tries the destination again (and finds it still mute).
    assert t.ternctl("flush", "dead.test").returncode == 0
    wait_until(lambda: len(t.events("connect_failed")) > len(tries), 15, what="dead.test tried again after a flush")


def test_router_that_does_not_resolve_is_not_used(ternd_factory, dns_factory, sink_factory):
    port = free_port()
    dns = dns_factory("--host-record=dest.test,127.0.0.2")
    s = sink_on(sink_factory, "127.0.0.2", port)
    t = delivering_ternd(ternd_factory, dns, port, routing={"router": "gateway.test", "firewall": True})
    ev = t.wait_event("router_unavailable")
    assert ev["router"] == "gateway.test"
    send(t, ["bob@dest.test"])
    wait_messages(s, 1)


def test_host_table_overrides_dns(ternd_factory, dns_factory, sink_factory, workdir):
    port = free_port()
    dns = dns_factory("--mx-host=dest.test,mx.dest.test,10", "--host-record=mx.dest.test,127.0.0.3")
    s = sink_on(sink_factory, "127.0.0.2", port)
    hosts = os.path.join(workdir, "hosts")
    with open(hosts, "w") as f:
        f.write("# the old system's local host table\n127.0.0.2 mx.dest.test\n")
    t = delivering_ternd(ternd_factory, dns, port, dns={"hosts_file": hosts})
    send(t, ["bob@dest.test"])
    wait_messages(s, 1)


def test_address_literal_needs_no_dns(ternd_factory, dns_factory, sink_factory):
    port = free_port()
    dns = dns_factory()
    s = sink_on(sink_factory, "127.0.0.2", port)
    t = delivering_ternd(ternd_factory, dns, port)
    send(t, ["bob@[127.0.0.2]"])
    wait_messages(s, 1)


def test_destination_rate_paces_the_messages(ternd_factory, dns_factory, sink_factory):
    port = free_port()
    dns = dns_factory("--host-record=dest.test,127.0.0.2")
    s = sink_on(sink_factory, "127.0.0.2", port)
    t = delivering_ternd(ternd_factory, dns, port, delivery={"destination_rate": 5})
    for i in range(6):
        send(t, [f"u{i}@dest.test"])
    report = wait_messages(s, 6, timeout=30)
    # Six messages at five a second: at least a second between the first and the last.
    assert report["elapsed_s"] >= 0.9, report


def test_disabled_delivery_keeps_mail_queued(ternd):
    send(ternd, ["bob@elsewhere.test"])
    wait_until(lambda: len(ternd.queue()) == 1, 10, what="the message queued")
    assert not ternd.events("delivery_started")
    r = ternd.ternctl("flush")
    assert r.returncode != 0 and "delivery is disabled" in (r.stdout + r.stderr), r
    [msg] = ternd.queue()
    assert msg["queue"] == "incoming"


@pytest.mark.parametrize("policy,hide,outcome,tls", [
    ("may", False, "delivered", "yes"),
    ("may", True, "delivered", "no"),
    ("encrypt", False, "delivered", "yes"),
    ("encrypt", True, "deferred", None),
    ("none", False, "delivered", "no"),
])
def test_starttls_policy_per_destination(ternd_factory, dns_factory, sink_factory, policy, hide, outcome, tls):
    port = free_port()
    dns = dns_factory("--host-record=dest.test,127.0.0.2")
    sink_on(sink_factory, "127.0.0.2", port, *(["--hide", "STARTTLS"] if hide else []))
    t = delivering_ternd(ternd_factory, dns, port,
                         routing={"transport": [{"domain": "dest.test", "next_hop": f"dest.test:{port}",
                                                 "tls": policy}]})
    send(t, ["bob@dest.test"])
    ev = t.wait_event(outcome, rcpt="bob@dest.test")
    if tls:
        assert ev["tls"] == tls, ev
    else:
        assert ev["dsn"] == "4.7.4", ev


def test_starttls_verify_checks_chain_and_name(ternd_factory, dns_factory, sink_factory, workdir):
    port = free_port()
    dns = dns_factory("--host-record=mx.sink.test,127.0.0.2", "--host-record=other.sink.test,127.0.0.2")
    cert, key = make_cert(workdir, cn="mx.sink.test")
    sink_on(sink_factory, "127.0.0.2", port, "--cert", cert, "--key", key, "--hostname", "mx.sink.test")
    transport = [{"domain": "good.test", "next_hop": f"mx.sink.test:{port}", "tls": "verify"},
                 {"domain": "wrongname.test", "next_hop": f"other.sink.test:{port}", "tls": "verify"}]
    t = delivering_ternd(ternd_factory, dns, port, delivery={"ca_file": cert}, routing={"transport": transport})
    send(t, ["bob@good.test"])
    assert t.wait_event("delivered", rcpt="bob@good.test")["tls"] == "yes"
    send(t, ["bob@wrongname.test"])
    ev = t.wait_event("deferred", rcpt="bob@wrongname.test")
    assert ev["dsn"] == "4.7.5", ev


@pytest.mark.parametrize("hide", [[], ["--hide", "CHUNKING"], ["--hide", "PIPELINING"]],
                         ids=["bdat-pipelined", "data", "bdat-unpipelined"])
@pytest.mark.parametrize("body_size", [1000, 300_000], ids=["small", "large"])
def test_content_arrives_exactly_with_bdat_or_data(ternd_factory, dns_factory, sink_factory, workdir, hide, body_size):
    # Lines starting with dots (stuffed for DATA, never for BDAT), 8-bit
    # text, and content beyond one 256 KiB piece (BDAT after the RCPT replies).
    line = ".dot first é\r\n..two dots\r\n.\r\nplain\r\n"
    body = ("Subject: exact\r\n\r\n" + line * (body_size // len(line) + 1)).encode()
    port = free_port()
    dns = dns_factory("--host-record=dest.test,127.0.0.2")
    maildir = os.path.join(workdir, "maildir")
    s = sink_on(sink_factory, "127.0.0.2", port, "--maildir", maildir, *hide)
    t = delivering_ternd(ternd_factory, dns, port)
    with smtplib.SMTP("127.0.0.1", t.port, timeout=10) as c:
        c.sendmail("alice@example.test", ["bob@dest.test"], body, mail_options=["BODY=8BITMIME"])
    wait_messages(s, 1)
    t.wait_event("delivered", rcpt="bob@dest.test")
    [name] = os.listdir(os.path.join(maildir, "new"))
    with open(os.path.join(maildir, "new", name), "rb") as f:
        stored = f.read()
    assert b"X-Tern-Sink-Mail-Params: SIZE=" in stored and b" BODY=8BITMIME" in stored
    # The sink's envelope lines, ternd's Received:, then the content as sent
    # (the Maildir has LF line ends).
    assert stored.endswith(b"\n" + body.replace(b"\r\n", b"\n")), stored[-200:]


@pytest.mark.parametrize("hide,awaited", [([], "BDAT"), (["--hide", "CHUNKING"], "DATA"),
                                          (["--hide", "PIPELINING"], "BDAT")])
def test_content_goes_with_bdat_when_the_server_offers_chunking(ternd_factory, dns_factory, sink_factory, hide,
                                                                awaited):
    # The sink hangs up where the content's reply is due: ternd's reason
    # names the command it was waiting on.
    port = free_port()
    dns = dns_factory("--host-record=dest.test,127.0.0.2")
    sink_on(sink_factory, "127.0.0.2", port, "--drop", "data", *hide)
    t = delivering_ternd(ternd_factory, dns, port)
    send(t, ["bob@dest.test"])
    ev = t.wait_event("deferred", rcpt="bob@dest.test")
    assert ev["reply"] == f"connection closed by the server while waiting for the reply to {awaited}", ev
