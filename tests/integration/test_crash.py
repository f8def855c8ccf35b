"""Durability: a 250 means the message survives SIGKILL, exactly once."""
import collections
import random
import re
import socket
import threading
import time

from conftest import RawSMTP, QID_RE

CLIENTS = 6
RUN_SECONDS = 2.0


def _client(port, n, acked, stop, errors):
    """Sends messages until stop is set; records (qid, message_id) of every 250."""
    seq = 0
    deadline = time.monotonic() + 30
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            c = RawSMTP("127.0.0.1", port, timeout=5)
        except OSError:
            return
        try:
            if c.reply().code != 220 or c.cmd("EHLO crash.test").code != 250:
                return
            for _ in range(200):
                if stop.is_set() or time.monotonic() >= deadline:
                    break
                seq += 1
                mid = f"<crash-{n}-{seq}@client.test>"
                body = (f"From: a@b.test\r\nTo: x@local.test\r\nSubject: crash {n} {seq}\r\n"
                        f"Message-ID: {mid}\r\n\r\n" + ("payload line\r\n" * (1 + seq % 40)))
                # pipelined envelope + data in one write
                c.send(f"MAIL FROM:<c{n}@b.test>\r\nRCPT TO:<x@local.test>\r\nDATA\r\n")
                if c.reply().code != 250 or c.reply().code != 250 or c.reply().code != 354:
                    return
                c.send(body.encode() + b".\r\n")
                r = c.reply()
                if r.code == 250:
                    m = QID_RE.search(r.text)
                    if not m:
                        errors.append(f"250 without QID: {r!r}")
                        return
                    acked.append((m.group(1), mid))
                else:
                    errors.append(f"unexpected reply {r!r}")
                    return
        except (ConnectionError, socket.timeout, TimeoutError, OSError, AssertionError):
            return  # the daemon was killed mid-transaction
        finally:
            c.close()


def test_sigkill_loses_no_acknowledged_message(ternd):
    acked, errors = [], []
    stop = threading.Event()
    threads = [threading.Thread(target=_client, args=(ternd.port, n, acked, stop, errors), daemon=True)
               for n in range(CLIENTS)]
    for th in threads:
        th.start()
    time.sleep(RUN_SECONDS)  # the load phase: clients run concurrently for this long
    ternd.kill()
    stop.set()
    for th in threads:
        th.join(15)
    assert not any(th.is_alive() for th in threads), "client threads did not finish"
    assert not errors, errors
    assert len(acked) >= CLIENTS, f"too few messages acknowledged before the kill: {len(acked)}"
    print(f"{len(acked)} messages acknowledged before SIGKILL")

    ternd.start()
    q = ternd.queue()
    ids = collections.Counter(e["id"] for e in q)
    dup_ids = [i for i, n in ids.items() if n > 1]
    assert not dup_ids, f"QIDs listed more than once: {dup_ids[:10]}"
    mids = collections.Counter(e["message_id"].strip("<>") for e in q if e.get("message_id"))

    acked_ids = [a for a, _ in acked]
    assert len(set(acked_ids)) == len(acked_ids), "the same QID was acknowledged twice"
    missing = [a for a in acked_ids if a not in ids]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged messages lost: {missing[:10]}"
    bad_mid = [m for _, m in acked if mids[m.strip("<>")] != 1]
    assert not bad_mid, f"acknowledged Message-IDs not present exactly once: {bad_mid[:10]}"
    # each acked QID carries the Message-ID that was acked for it
    by_id = {e["id"]: e for e in q}
    wrong = [(a, m) for a, m in acked if by_id[a]["message_id"].strip("<>") != m.strip("<>")]
    assert not wrong, wrong[:10]
    # no partial message was committed: check the bodies of the messages that
    # were in flight at the kill (present but never acknowledged) and a sample
    # of the acknowledged ones
    acked_set = set(acked_ids)
    unacked = [e["id"] for e in q if e["id"] not in acked_set]
    assert len(unacked) <= CLIENTS, f"more unacknowledged messages than clients: {len(unacked)}"
    sample = unacked + random.Random(1).sample(acked_ids, min(150, len(acked_ids)))
    for qid in sample:
        body = ternd.body_bytes(qid)
        m = re.search(rb"\r\nSubject: crash (\d+) (\d+)\r\n", body)
        assert m, body[:400]
        seq = int(m.group(2))
        want = b"\r\n\r\n" + b"payload line\r\n" * (1 + seq % 40)
        assert body.endswith(want) and body.count(b"payload line") == 1 + seq % 40, (qid, body[-300:])
    # the restarted daemon keeps accepting
    with RawSMTP("127.0.0.1", ternd.port) as c:
        assert c.reply().code == 220
        assert c.cmd("EHLO crash.test").code == 250
