"""Delivery on several loops (delivery.loops): each next hop belongs to one
loop, which keeps that destination's limits; the active set, routing and
settling stay one for the whole engine.

Real parts only, as in test_delivery.py: ternd, dnsmasq for the .test
domains, tern-sink instances on 127.0.0.x as the destinations' servers.
"""
import os
import smtplib
import threading
import time

import pytest

from conftest import active_messages, delivering_ternd, free_port, sink_on, wait_messages, wait_until


def fnv1a64(text):
    h = 0xcbf29ce484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001b3) % (1 << 64)
    return h


def loop_of(domain, loops):
    """The loop that owns the MX destination `domain`, as the engine picks
    it (Impl::owner in mta/delivery/delivery_engine.cpp): FNV-1a of the
    hop's key (NextHop::key(): kind, host, port, TLS policy "may" = 1)."""
    return fnv1a64(f"mx:{domain}:25:tls1") % loops


def domains_on_every_loop(loops, per_loop=1):
    """`per_loop` domains owned by each of the `loops` loops."""
    found = {k: [] for k in range(loops)}
    i = 0
    while any(len(v) < per_loop for v in found.values()):
        domain = f"d{i}.test"
        if len(found[loop_of(domain, loops)]) < per_loop:
            found[loop_of(domain, loops)].append(domain)
        i += 1
    return [d for k in range(loops) for d in found[k]]


class ConnectionWatch:
    """Samples the established TCP connections to some addresses (ternd's
    side: the remote end is the sink) until stopped; `most` is the largest
    number seen at once. Sampling can miss a moment, never invent one."""

    def __init__(self, endpoints):
        self.remotes = {self._hex(ip, port) for ip, port in endpoints}
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _hex(ip, port):
        a, b, c, d = (int(x) for x in ip.split("."))
        return f"{d:02X}{c:02X}{b:02X}{a:02X}:{port:04X}"

    def _run(self):
        while not self._stop.is_set():
            with open("/proc/net/tcp") as f:
                rows = [line.split() for line in f.readlines()[1:]]
            now = sum(1 for r in rows if r[2] in self.remotes and r[3] == "01")
            self.most = max(self.most, now)
            time.sleep(0.005)

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        return self.most


def send_one(t, rcpt_options, sender="alice@example.test", body="Subject: t\r\n\r\nhello\r\n"):
    """One message; rcpt_options: [(address, [ESMTP options])]."""
    with smtplib.SMTP("127.0.0.1", t.port, timeout=10) as c:
        c.ehlo("client.test")
        assert c.mail(sender)[0] == 250
        for rcpt, options in rcpt_options:
            assert c.rcpt(rcpt, options)[0] == 250
        assert c.data(body.encode())[0] == 250


@pytest.mark.parametrize("loops", [2, 3])
def test_each_destination_keeps_its_connection_limit(ternd_factory, dns_factory, sink_factory, loops):
    port = free_port()
    domains = domains_on_every_loop(loops, per_loop=2)
    ips = {d: f"127.0.0.{2 + i}" for i, d in enumerate(domains)}
    dns = dns_factory(*[f"--host-record={d},{ip}" for d, ip in ips.items()])
    sinks = {d: sink_on(sink_factory, ip, port, "--delay", "dot=200") for d, ip in ips.items()}
    t = delivering_ternd(ternd_factory, dns, port, delivery={"loops": loops, "max_per_destination": 1})
    assert t.wait_event("delivery_started")["loops"] == str(loops)
    watches = {d: ConnectionWatch([(ip, port)]) for d, ip in ips.items()}
    try:
        for i in range(3):
            for d in domains:
                send_one(t, [(f"u{i}@{d}", [])])
        for d in domains:
            wait_messages(sinks[d], 3)
    finally:
        most = {d: w.stop() for d, w in watches.items()}
    assert all(n == 1 for n in most.values()), most
    wait_until(lambda: t.queue() == [], 10, what="an empty queue")
    # Every destination was served (the loops shared the work) and each
    # message was settled once.
    finished = [e["qid"] for e in t.events("finished")]
    assert len(finished) == 3 * len(domains) == len(set(finished)), finished


def test_a_message_on_two_loops_settles_once(ternd_factory, dns_factory, sink_factory, workdir):
    """Recipients whose destinations belong to different loops: each loop
    delivers its own, the last to finish settles the message, once, with
    the notices both outcomes call for."""
    port = free_port()
    a, b = domains_on_every_loop(2)
    dns = dns_factory(f"--host-record={a},127.0.0.2", f"--host-record={b},127.0.0.3",
                      "--host-record=example.test,127.0.0.4")
    maildir = os.path.join(workdir, "sender")
    sender_box = sink_on(sink_factory, "127.0.0.4", port, "--maildir", maildir)
    # a (the home loop's): takes the message, without DSN (so NOTIFY=SUCCESS
    # calls for a "relayed" notice).
    sink_a = sink_on(sink_factory, "127.0.0.2", port, "--hide", "DSN")
    # b (loop 1's): refuses the recipient, late: its job finishes last, so
    # loop 1 settles the message and tells the home loop.
    sink_on(sink_factory, "127.0.0.3", port, "--fault", "rcpt=550", "--delay", "rcpt=300")
    t = delivering_ternd(ternd_factory, dns, port, delivery={"loops": 2})
    send_one(t, [(f"ok@{a}", ["NOTIFY=SUCCESS,FAILURE"]), (f"no@{b}", [])])
    wait_messages(sink_a, 1)
    qid = t.wait_event("delivered", rcpt=f"ok@{a}")["qid"]
    assert t.wait_event("undeliverable", rcpt=f"no@{b}")["qid"] == qid
    t.wait_event("finished", qid=qid, result="failed")
    # Out of the active set too (the home loop heard of the settling).
    wait_until(lambda: active_messages(t) == 0, 20, what="an empty active set")
    wait_messages(sender_box, 1)
    # The notices delivered too: nothing of the message is left to settle.
    wait_until(lambda: t.queue() == [], 20, what="an empty queue")
    assert [e["result"] for e in t.events("finished") if e["qid"] == qid] == ["failed"]
    actions = sorted(e["action"] for e in t.events("dsn_queued") if e["qid"] == qid)
    assert actions == ["failed", "relayed"], actions


def test_max_connections_is_one_count_for_every_loop(ternd_factory, dns_factory, sink_factory):
    """delivery.max_connections = 1 with two loops: a destination on the
    other loop waits for the one slot (resource_busy) and goes when the
    first loop's connection closes."""
    port = free_port()
    a, b = domains_on_every_loop(2)
    dns = dns_factory(f"--host-record={a},127.0.0.2", f"--host-record={b},127.0.0.3")
    sink_a = sink_on(sink_factory, "127.0.0.2", port, "--delay", "dot=200")
    sink_b = sink_on(sink_factory, "127.0.0.3", port, "--delay", "dot=200")
    t = delivering_ternd(ternd_factory, dns, port, delivery={"loops": 2, "max_connections": 1})
    watch = ConnectionWatch([("127.0.0.2", port), ("127.0.0.3", port)])
    try:
        send_one(t, [(f"x@{a}", []), (f"y@{b}", [])])
        send_one(t, [(f"z@{b}", []), (f"w@{a}", [])])
        wait_messages(sink_a, 2)
        wait_messages(sink_b, 2)
    finally:
        most = watch.stop()
    assert most == 1, most
    busy = t.events("resource_busy")
    assert busy and all(e["limit"] == "max_connections" for e in busy), busy
    wait_until(lambda: t.queue() == [], 10, what="an empty queue")
    finished = [e["qid"] for e in t.events("finished")]
    assert len(finished) == 2 == len(set(finished)), finished
