"""The event log: one parsable line per event, whatever the client sends."""
import json

import pytest

from conftest import expect, parse_kv, qid_of, wait_until

FAKE = "FAKEFAKEFAKEFAKE"

NASTY_IDS = [
    b'<we ird="x"=y@client.test>',
    b"<inj@client.test> qid=" + FAKE.encode() + b" client=6.6.6.6",
    b"<fold@client.test>\r\n 2026-01-01T00:00:00Z event=received qid=" + FAKE.encode(),
    b"<back\\slash@client.test>",
    b"<tab\there@client.test>",
]


def _send_with_id(t, mid):
    msg = b"From: a@b.test\r\nSubject: log\r\nMessage-ID: " + mid + b"\r\n\r\nbody\r\n"
    with t.raw() as c:
        c.envelope()
        return qid_of(expect(c.data(msg + b".\r\n"), 250, "2.0.0"))


@pytest.mark.parametrize("mid", NASTY_IDS, ids=range(len(NASTY_IDS)))
def test_kv_log_not_injectable(ternd, mid):
    qid = _send_with_id(ternd, mid)
    ev = ternd.wait_event("received", qid=qid)
    assert ev["client"] == "127.0.0.1", ev
    for line in ternd.log().splitlines():
        e = parse_kv(line)
        if e is None:
            continue
        assert e.get("qid") != FAKE, f"log injection: {line!r}"
    # every line of the log is an event line
    for line in ternd.log().splitlines():
        assert " event=" in line or line.startswith("ternd:"), f"stray log line {line!r}"


def test_kv_quoting_round_trip(ternd):
    mid = b'<we ird="x"=y@client.test>'
    qid = _send_with_id(ternd, mid)
    ev = ternd.wait_event("received", qid=qid)
    assert ev["message_id"] == mid.decode(), ev


def test_json_log_lines_parse(ternd_factory):
    t = ternd_factory({"log": {"format": "json"}})
    qids = [_send_with_id(t, m) for m in NASTY_IDS]

    def received():
        evs = []
        for line in t.log().splitlines():
            if not line.strip():
                continue
            evs.append(json.loads(line))  # every line must be one JSON object
        got = {e.get("qid") for e in evs if e.get("event") == "received"}
        return set(qids) <= got and evs
    evs = wait_until(received, what="received events in the json log")
    assert all(isinstance(e, dict) and "time" in e and "event" in e for e in evs)
    assert not any(e.get("qid") == FAKE for e in evs)
    by_qid = {e["qid"]: e for e in evs if e.get("event") == "received"}
    assert by_qid[qids[0]]["message_id"] == NASTY_IDS[0].decode()
