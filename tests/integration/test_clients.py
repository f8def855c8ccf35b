"""Real third-party clients: swaks (plain, pipelining, STARTTLS) and curl."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import QID_RE

pytestmark = pytest.mark.skipif(not shutil.which("swaks") or not shutil.which("curl"),
                                reason="swaks/curl not installed")


def _swaks(port, *extra, to="x@local.test", header_id=None):
    args = ["swaks", "--server", "127.0.0.1", "--port", str(port), "--to", to,
            "--from", "a@b.test", "--helo", "client.test", "--timeout", "20"]
    if header_id:
        args += ["--header", f"Message-Id: {header_id}"]
    r = subprocess.run(args + list(extra), capture_output=True, text=True, timeout=60)
    return r


def _acked_qid(output):
    m = QID_RE.search(output)
    assert m, output
    return m.group(1)


def test_swaks_plain(ternd):
    r = _swaks(ternd.port, header_id="<swaks-plain@client.test>")
    assert r.returncode == 0, r.stdout + r.stderr
    qid = _acked_qid(r.stdout)
    env = {e["id"]: e for e in ternd.queue()}[qid]
    assert env["sender"] == "a@b.test"
    assert [x["address"] for x in env["recipients"]] == ["x@local.test"]
    assert env["message_id"].strip("<>") == "swaks-plain@client.test"


def test_swaks_pipelining(ternd):
    r = _swaks(ternd.port, "--pipeline", to="x@local.test,y@local.test")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    # swaks really pipelined: DATA was sent before the reply to MAIL was read
    assert out.index(" -> DATA") < out.index("<-  250 2.1.0"), out
    qid = _acked_qid(r.stdout)
    env = {e["id"]: e for e in ternd.queue()}[qid]
    assert sorted(x["address"] for x in env["recipients"]) == ["x@local.test", "y@local.test"]


def test_swaks_tls(ternd_factory, cert_pair):
    cert, key = cert_pair
    t = ternd_factory({"tls": {"certificate": cert, "private_key": key}})
    # swaks does not verify the certificate unless --tls-verify is given
    r = _swaks(t.port, "--tls", header_id="<swaks-tls@client.test>")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "STARTTLS" in r.stdout
    qid = _acked_qid(r.stdout)
    body = t.body_bytes(qid)
    assert re.search(rb"with ESMTPS", body.split(b"\r\n\r\n")[0]), body[:500]


def test_swaks_tls_required_fails_without_cert(ternd):
    r = _swaks(ternd.port, "--tls")
    assert r.returncode != 0, "swaks --tls succeeded against a server without STARTTLS"
    assert ternd.queue() == []


def test_swaks_relay_denied(ternd_factory):
    t = ternd_factory({"relay": {"trusted_networks": []}})
    r = _swaks(t.port, to="z@other.example")
    assert r.returncode != 0
    assert re.search(r"554[ -]5\.7\.1", r.stdout), r.stdout
    t.wait_event("relay_rejected", rcpt="z@other.example")


def test_curl(ternd, workdir):
    path = os.path.join(workdir, "msg.txt")
    with open(path, "wb") as f:
        f.write(b"From: a@b.test\r\nTo: x@local.test\r\nSubject: curl\r\n"
                b"Message-ID: <curl-1@client.test>\r\n\r\nsent by curl\r\n.leading dot\r\n")
    r = subprocess.run(["curl", "-sS", "--max-time", "30", f"smtp://127.0.0.1:{ternd.port}",
                        "--mail-from", "a@b.test", "--mail-rcpt", "x@local.test",
                        "--upload-file", path], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    ev = ternd.wait_event("received", message_id="<curl-1@client.test>")
    body = ternd.body_bytes(ev["qid"])
    assert body.endswith(b"\r\n\r\nsent by curl\r\n.leading dot\r\n"), body


def test_curl_rejected_recipient(ternd_factory, workdir):
    t = ternd_factory({"relay": {"trusted_networks": []}})
    path = os.path.join(workdir, "msg.txt")
    with open(path, "wb") as f:
        f.write(b"Subject: curl\r\n\r\nx\r\n")
    r = subprocess.run(["curl", "-sS", "--max-time", "30", f"smtp://127.0.0.1:{t.port}",
                        "--mail-from", "a@b.test", "--mail-rcpt", "z@other.example",
                        "--upload-file", path], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "554" in r.stderr, r.stderr
    assert t.queue() == []
