"""ternctl against a running ternd: queue listing, show, hold/release/delete, stats."""
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import time

import pytest

from conftest import (delivering_ternd, expect, free_port, hold_backlog, qid_of, send_simple, simple_message, sink_on,
                      wait_messages, wait_until)

KEYS = {"id", "queue", "size", "arrival", "sender", "recipients", "attempts", "next_attempt",
        "last_error", "message_id", "envid", "ret", "body", "smtputf8"}


def _queue_of(t, qid):
    return {e["id"]: e for e in t.queue()}.get(qid)


def test_queue_json(ternd):
    with ternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<s@b.test> ENVID=e1 RET=FULL"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<x@local.test> NOTIFY=FAILURE ORCPT=rfc822;x@local.test"), 250, "2.1.5")
        expect(c.cmd("RCPT TO:<y@local.test>"), 250, "2.1.5")
        msg = simple_message(msgid="<q1@client.test>")
        qid = qid_of(expect(c.data(msg + b".\r\n"), 250, "2.0.0"))
    q = ternd.queue()
    assert isinstance(q, list) and len(q) == 1
    e = q[0]
    assert KEYS <= set(e), KEYS - set(e)
    assert e["id"] == qid
    assert e["queue"] == "incoming"
    assert e["sender"] == "s@b.test"
    assert e["envid"] == "e1"
    assert e["ret"] == "FULL"
    assert e["message_id"].strip("<>") == "q1@client.test"
    assert e["smtputf8"] is False
    assert isinstance(e["size"], int) and e["size"] > len(msg)  # includes our Received:
    assert e["attempts"] == 0
    rc = e["recipients"]
    assert [r["address"] for r in rc] == ["x@local.test", "y@local.test"]
    for r in rc:
        assert {"address", "state", "notify", "orcpt"} <= set(r)
        assert r["state"] == "pending"
    assert rc[0]["orcpt"].lower() == "rfc822;x@local.test"


def test_queue_text_lists_ids(ternd):
    qids = [send_simple(ternd) for _ in range(2)]
    r = ternd.ternctl("queue")
    assert r.returncode == 0, r.stderr
    for q in qids:
        assert q in r.stdout


def test_queue_ordering_oldest_first(ternd):
    qids = [send_simple(ternd) for _ in range(5)]
    listed = [e["id"] for e in ternd.queue()]
    assert listed == qids
    assert qids == sorted(qids), "queue IDs not time-ordered"
    assert len(set(qids)) == 5


def test_show(ternd):
    msg = simple_message(subject="show me", msgid="<show@client.test>", body="the body line\r\n")
    with ternd.raw() as c:
        c.envelope(sender="s@b.test", rcpts=["x@local.test"])
        qid = qid_of(expect(c.data(msg + b".\r\n"), 250, "2.0.0"))
    r = ternd.ternctl("show", qid)
    assert r.returncode == 0, r.stderr
    out = r.stdout.replace("\r\n", "\n")
    env, sep, headers = out.partition("\n\n")
    assert sep, out
    assert qid in env and "s@b.test" in env and "x@local.test" in env, env
    assert "Subject: show me" in headers
    assert "Message-ID: <show@client.test>" in headers
    assert headers.lstrip().startswith("Received:"), headers
    assert "the body line" not in out, "show without --body printed the body"

    b = ternd.body_bytes(qid)
    assert b.startswith(b"Received:")
    assert b.endswith(msg)
    assert b"id " + qid.encode() in b


def test_hold_release_delete(ternd):
    q1, q2, q3 = (send_simple(ternd) for _ in range(3))
    r = ternd.ternctl("hold", q1, q2)
    assert r.returncode == 0, r.stderr
    qs = {e["id"]: e["queue"] for e in ternd.queue()}
    assert qs == {q1: "hold", q2: "hold", q3: "incoming"}

    r = ternd.ternctl("release", q1)
    assert r.returncode == 0, r.stderr
    qs = {e["id"]: e["queue"] for e in ternd.queue()}
    assert qs[q1] == "incoming" and qs[q2] == "hold"

    r = ternd.ternctl("delete", q2, q3)
    assert r.returncode == 0, r.stderr
    assert [e["id"] for e in ternd.queue()] == [q1]
    r = ternd.ternctl("show", q2)
    assert r.returncode != 0

    # survives restart
    ternd.stop()
    ternd.start()
    assert [(e["id"], e["queue"]) for e in ternd.queue()] == [(q1, "incoming")]


def test_hold_survives_restart(ternd):
    q = send_simple(ternd)
    assert ternd.ternctl("hold", q).returncode == 0
    ternd.stop()
    ternd.start()
    assert _queue_of(ternd, q)["queue"] == "hold"


def test_unknown_id(ternd):
    send_simple(ternd)
    for cmd in ("hold", "release", "delete"):
        r = ternd.ternctl(cmd, "0000000000000000")
        assert r.returncode == 1, (cmd, r.returncode, r.stdout, r.stderr)
    r = ternd.ternctl("show", "0000000000000000")
    assert r.returncode != 0, (r.stdout, r.stderr)
    r = ternd.ternctl("delete", "not-an-id")
    assert r.returncode != 0
    assert len(ternd.queue()) == 1


def test_stats(ternd):
    send_simple(ternd)
    r = ternd.ternctl("stats")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


def test_not_running(ternd):
    path = ternd.socket_path
    ternd.stop()
    for args in (["queue"], ["queue", "--json"], ["stats"], ["hold", "0000000000000000"]):
        r = ternd.ternctl(*args, socket_path=path)
        assert r.returncode != 0
        assert "not running" in r.stderr, r.stderr
    r = ternd.ternctl("queue", socket_path=os.path.join(ternd.dir, "nonexistent.sock"))
    assert r.returncode != 0 and "not running" in r.stderr


def test_empty_queue_json(ternd):
    assert ternd.queue() == []
    r = ternd.ternctl("queue", "--json")
    assert json.loads(r.stdout) == []


def test_not_running_exit_code_3(ternd):
    """docs/operations.md: when ternd is not running, ternctl says so and exits 3."""
    path = ternd.socket_path
    ternd.stop()
    r = ternd.ternctl("queue", socket_path=path)
    assert r.returncode == 3, (r.returncode, r.stderr)


def test_ternctl_config_option(ternd):
    from conftest import TERNCTL
    import subprocess
    q = send_simple(ternd)
    r = subprocess.run([TERNCTL, "--config", ternd.config_path, "queue", "--json"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert [e["id"] for e in json.loads(r.stdout)] == [q]


def test_admin_actions_logged(ternd):
    q1, q2 = send_simple(ternd), send_simple(ternd)
    assert ternd.ternctl("hold", q1).returncode == 0
    assert ternd.ternctl("release", q1).returncode == 0
    assert ternd.ternctl("delete", q2).returncode == 0
    ternd.wait_event("held", qid=q1)
    ternd.wait_event("released", qid=q1)
    ternd.wait_event("deleted", qid=q2)


def test_stats_counters(ternd):
    for _ in range(3):
        send_simple(ternd)
    c = ternd.raw()
    try:
        r = ternd.ternctl("stats")
        assert r.returncode == 0, r.stderr
        out = r.stdout
        for k in ("commits", "batches", "wal_syncs"):
            assert k in out, out
        m = re.search(r"commits\D{0,5}(\d+)", out)
        assert m and int(m.group(1)) >= 3, out
        assert "connection" in out.lower(), out
    finally:
        c.close()


QUEUES = ("incoming", "active", "retry1", "retry2", "hold", "busy", "quarantine")


def _stats_text(t):
    """`ternctl stats` as {key: int}: every line is "key value"."""
    r = t.ternctl("stats")
    assert r.returncode == 0, r.stderr
    return {k: int(v) for k, v in (line.split() for line in r.stdout.splitlines())}


def _stats_json(t):
    r = t.ternctl("stats", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _queued(t):
    """Messages per queue from both formats, which must agree."""
    text = {q: _stats_text(t)[f"queue.{q}"] for q in QUEUES}
    js = _stats_json(t)["queues"]
    assert set(js) == set(QUEUES), js
    return text, js


def test_stats_queues_and_threads(ternd_factory, dns_factory, sink_factory):
    """stats (both formats): messages per queue as mail is held, released
    and delivered; the engine's active set; CPU time per thread name."""
    port = free_port()
    dns = dns_factory("--host-record=dest.test,127.0.0.2")
    s = sink_on(sink_factory, "127.0.0.2", port, "--delay", "dot=300")
    t = delivering_ternd(ternd_factory, dns, port, delivery={"active_limit": 2, "max_per_destination": 1})
    hold_backlog(t, "dest.test", [f"r{i}@dest.test" for i in range(5)])
    text, js = _queued(t)
    assert text == js == {**{q: 0 for q in QUEUES}, "hold": 5}, (text, js)
    stats = _stats_json(t)
    assert stats["active_messages"] == 0 and stats["commits"] >= 5, stats
    assert isinstance(stats["connections"], int), stats

    assert t.ternctl("release-domain", "dest.test").returncode == 0
    # Delivery one at a time, 300 ms each: the spool's active queue and the
    # engine's active set are seen busy.
    busy = wait_until(lambda: (j := _stats_json(t))["queues"]["active"] >= 1 and j["active_messages"] >= 1 and j,
                      10, what="messages being delivered")
    assert busy["queues"]["active"] <= 2 and busy["queues"]["hold"] == 0, busy
    assert sum(busy["queues"].values()) <= 5, busy
    wait_messages(s, 5)
    wait_until(lambda: _queued(t) == ({q: 0 for q in QUEUES},) * 2, 10, what="every queue empty")
    text = _stats_text(t)
    assert text["active_messages"] == 0, text
    assert text["finished_log_bytes"] == 0, text  # queue.finished_retention defaults to none

    # Threads, by name, in both formats.
    threads = {e["name"]: e for e in _stats_json(t)["threads"]}
    for name in ("ternd", "tern-spool", "tern-worker-0", "tern-deliver-0", "tern-control", "tern-log"):
        assert name in threads, threads
        assert threads[name]["threads"] >= 1, threads[name]
        assert f"thread.{name}.user_ms" in text and f"thread.{name}.sys_ms" in text, text
    # CPU time comes in ticks of 10 ms: a thread may not have used one yet,
    # the process as a whole has.
    assert sum(e["user_ms"] + e["sys_ms"] for e in threads.values()) > 0, threads


def test_queue_json_size_and_arrival(ternd):
    import datetime
    import time
    q = send_simple(ternd)
    e = {x["id"]: x for x in ternd.queue()}[q]
    assert e["size"] == len(ternd.body_bytes(q)), (e["size"], len(ternd.body_bytes(q)))
    arrival = datetime.datetime.fromisoformat(e["arrival"].replace("Z", "+00:00"))
    assert abs(arrival.timestamp() - time.time()) < 120, e["arrival"]


def test_control_socket_answers_as_soon_as_the_smtp_port_does(ternd_factory):
    """Scripts wait for the SMTP port and then use ternctl: the control socket
    must already be open when the port first accepts."""
    from conftest import TERND, TERNCTL
    t = ternd_factory(start=False)
    for attempt in range(3):
        t.port = free_port()
        t.write_config()
        with open(t.log_path, "ab") as logf:
            proc = subprocess.Popen([TERND, "--config", t.config_path], cwd=t.dir,
                                    stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        try:
            deadline = time.monotonic() + 10
            while True:
                assert proc.poll() is None, t.log()
                assert time.monotonic() < deadline, "SMTP port never opened"
                try:
                    socket.create_connection(("127.0.0.1", t.port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.001)
            r = subprocess.run([TERNCTL, "--socket", t.socket_path, "queue"],
                               capture_output=True, text=True, timeout=10)
            assert r.returncode == 0, (attempt, r.stderr)
        finally:
            proc.terminate()
            proc.wait(15)
    events = [e["event"] for e in t.events()]
    assert "control_listening" in events
    assert events.index("control_listening") < events.index("listening"), events


def test_permission_denied_is_not_reported_as_not_running(ternd):
    """A user who may not use the control socket is told so (exit 4), not
    that ternd is down."""
    from conftest import TERNCTL
    if os.geteuid() != 0:
        pytest.skip("needs root to run ternctl as another user")
    # Let `nobody` reach the socket's directory and run ternctl: only the
    # socket's own mode (0600, root's) stands in the way.
    tool_dir = os.path.join(ternd.dir, "bin")
    os.makedirs(tool_dir)
    tool = os.path.join(tool_dir, "ternctl")
    shutil.copy(TERNCTL, tool)
    for d in (os.path.dirname(ternd.dir), ternd.dir, tool_dir):
        os.chmod(d, 0o755)
    os.chmod(tool, 0o755)
    assert stat.S_IMODE(os.stat(ternd.socket_path).st_mode) == 0o600

    def as_nobody():
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)

    r = subprocess.run([tool, "--socket", ternd.socket_path, "queue"], capture_output=True, text=True,
                       timeout=10, preexec_fn=as_nobody)
    assert r.returncode == 4, (r.returncode, r.stderr)
    assert f"permission denied on {ternd.socket_path}" in r.stderr, r.stderr
    assert "not running" not in r.stderr
    # root still gets through
    assert ternd.ternctl("queue").returncode == 0


def test_stats_finished_log_with_a_retention(ternd_factory):
    """queue.finished_retention above 0: removed messages leave a summary in
    the spool, whose size stats shows once it is on disk (the reclaimer
    flushes after deletions)."""
    t = ternd_factory({"queue": {"finished_retention": "1h"}})
    qids = [send_simple(t) for _ in range(20)]
    assert _stats_text(t)["queue.incoming"] == 20
    assert t.ternctl("delete", *qids).returncode == 0
    stats = wait_until(lambda: (s := _stats_text(t))["finished_log_bytes"] > 0 and s, 15,
                       what="the finished log on disk")
    assert stats["queue.incoming"] == 0, stats
    assert _stats_json(t)["finished_log_bytes"] > 0

