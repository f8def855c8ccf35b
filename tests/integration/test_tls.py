"""STARTTLS (RFC 3207): offer, handshake, minimum version, injection defence,
state reset, Received: header, certificate reload on SIGHUP."""
import os
import re
import shutil
import signal
import smtplib
import ssl
import subprocess

import pytest

from conftest import client_tls_context, expect, make_cert, qid_of, simple_message, wait_until


def tls_conf(cert_pair, **extra):
    cert, key = cert_pair
    d = {"certificate": cert, "private_key": key}
    d.update(extra)
    return {"tls": d}


@pytest.fixture
def tternd(ternd_factory, cert_pair):
    return ternd_factory(tls_conf(cert_pair))


def ehlo_keywords(reply):
    return [l.split()[0].upper() for l in reply.lines[1:] if l.split()]


def test_starttls_offered_only_with_certificate(tternd, ternd_factory):
    with tternd.raw() as c:
        assert "STARTTLS" in ehlo_keywords(expect(c.ehlo(), 250))
    plain = ternd_factory()
    with plain.raw() as c:
        assert "STARTTLS" not in ehlo_keywords(expect(c.ehlo(), 250))


def test_starttls_session(tternd):
    with tternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.starttls(), 220, "2.0.0")
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
        # state is reset: EHLO is required again
        expect(c.cmd("MAIL FROM:<a@b.test>"), 503, "5.5.1")
        r = expect(c.ehlo(), 250)
        kw = ehlo_keywords(r)
        assert "STARTTLS" not in kw, "STARTTLS offered again after TLS (RFC 3207 4.2)"
        assert "PIPELINING" in kw
        c.envelope(ehlo=False)
        qid = qid_of(expect(c.data(simple_message() + b".\r\n"), 250, "2.0.0"))
        version, cipher = c.sock.version(), c.sock.cipher()[0]
        expect(c.cmd("QUIT"), 221)
    ev = tternd.wait_event("tls", client="127.0.0.1")
    assert ev.get("version") == version, ev
    stored = tternd.body_bytes(qid)
    rec = stored.split(b"\r\n\r\n")[0].split(b"\r\n")
    hdr = [rec[0]]
    for l in rec[1:]:
        if l[:1] in (b" ", b"\t"):
            hdr.append(l)
        else:
            break
    hdr = b" ".join(hdr)
    assert hdr.startswith(b"Received:"), hdr
    assert re.search(rb"\bwith ESMTPS\b", hdr), hdr
    assert version.encode() in hdr, (version, hdr)
    assert cipher.encode() in hdr, (cipher, hdr)
    assert b"id " + qid.encode() in hdr


def test_starttls_transaction_reset(tternd):
    """A transaction begun before STARTTLS does not survive it."""
    with tternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("MAIL FROM:<a@b.test>"), 250, "2.1.0")
        r = c.starttls()
        if r.code == 220:
            expect(c.ehlo(), 250)
            expect(c.cmd("RCPT TO:<x@local.test>"), 503, "5.5.1")
        else:
            # refusing STARTTLS inside a transaction is acceptable too
            assert r.code == 503, r


def test_starttls_with_argument(tternd):
    with tternd.raw() as c:
        expect(c.ehlo(), 250)
        r = c.cmd("STARTTLS now")
        assert r.code == 501, r
        expect(c.cmd("NOOP"), 250, "2.0.0")


def test_starttls_injection_discarded(tternd):
    with tternd.raw() as c:
        expect(c.ehlo(), 250)
        c.send(b"STARTTLS\r\nNOOP\r\n")
        expect(c.reply(), 220, "2.0.0")
        assert c.buf == b"", f"server replied to the injected command in plaintext: {c.buf!r}"
        c.sock = client_tls_context().wrap_socket(c.sock, server_hostname="localhost")
        # the first reply over TLS must be HELP's, not the injected NOOP's
        expect(c.cmd("HELP"), 214, "2.0.0")
        expect(c.ehlo(), 250)
        expect(c.cmd("NOOP"), 250, "2.0.0")


def test_starttls_in_pipelined_group(tternd):
    with tternd.raw() as c:
        c.send(b"EHLO client.test\r\nSTARTTLS\r\nNOOP\r\nMAIL FROM:<evil@b.test>\r\n")
        expect(c.reply(), 250)
        expect(c.reply(), 220, "2.0.0")
        assert c.buf == b""
        c.sock = client_tls_context().wrap_socket(c.sock, server_hostname="localhost")
        expect(c.cmd("HELP"), 214, "2.0.0")
        expect(c.ehlo(), 250)
        expect(c.cmd("RCPT TO:<x@local.test>"), 503, "5.5.1")


def test_starttls_injection_of_mail(tternd):
    with tternd.raw() as c:
        expect(c.ehlo(), 250)
        c.send(b"STARTTLS\r\nEHLO evil\r\nMAIL FROM:<evil@b.test>\r\n")
        expect(c.reply(), 220, "2.0.0")
        c.sock = client_tls_context().wrap_socket(c.sock, server_hostname="localhost")
        # injected EHLO/MAIL must not have taken effect
        expect(c.cmd("RCPT TO:<x@local.test>"), 503, "5.5.1")
        expect(c.ehlo(), 250)
        expect(c.cmd("RCPT TO:<x@local.test>"), 503, "5.5.1")


def _tls_ctx(minv, maxv):
    ctx = client_tls_context()
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = minv
    ctx.maximum_version = maxv
    return ctx


def test_tls_min_version_default_rejects_tls11(tternd):
    with tternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("STARTTLS"), 220, "2.0.0")
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            _tls_ctx(ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1).wrap_socket(c.sock, server_hostname="localhost")
    tternd.wait_event("tls_failed", client="127.0.0.1")
    # TLS 1.2 works
    with tternd.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("STARTTLS"), 220, "2.0.0")
        s = _tls_ctx(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2).wrap_socket(c.sock, server_hostname="localhost")
        assert s.version() == "TLSv1.2"
        c.sock = s
        expect(c.ehlo(), 250)


def test_tls_min_version_13(ternd_factory, cert_pair):
    t = ternd_factory(tls_conf(cert_pair, min_version="TLSv1.3"))
    with t.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.cmd("STARTTLS"), 220, "2.0.0")
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            _tls_ctx(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2).wrap_socket(c.sock, server_hostname="localhost")
    with t.raw() as c:
        expect(c.ehlo(), 250)
        expect(c.starttls(), 220, "2.0.0")
        assert c.sock.version() == "TLSv1.3"
        expect(c.ehlo(), 250)


def test_smtplib_starttls(tternd):
    with smtplib.SMTP("127.0.0.1", tternd.port, timeout=10) as s:
        s.ehlo("client.test")
        s.starttls(context=client_tls_context())
        s.ehlo("client.test")
        assert not s.has_extn("starttls")
        assert s.sendmail("a@b.test", ["x@local.test"], simple_message(msgid="<tls-smtplib@c.test>")) == {}
    tternd.wait_event("received", message_id="<tls-smtplib@c.test>")


def test_openssl_s_client_starttls(tternd):
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{tternd.port}",
                        "-starttls", "smtp", "-quiet", "-crlf"],
                       input=b"EHLO client.test\nQUIT\n", capture_output=True, timeout=30)
    out = r.stdout.decode("utf-8", "replace")
    assert re.search(r"^250[ -]", out, re.M), (out, r.stderr)
    assert re.search(r"^221[ -]", out, re.M), (out, r.stderr)


def _peer_der(port):
    from conftest import RawSMTP
    with RawSMTP("127.0.0.1", port) as c:
        expect(c.reply(), 220)
        expect(c.ehlo(), 250)
        expect(c.starttls(), 220, "2.0.0")
        return c.sock.getpeercert(binary_form=True)


def _file_der(cert):
    with open(cert) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def test_sighup_reloads_certificate(ternd_factory, workdir):
    cdir = os.path.join(workdir, "certs")
    os.makedirs(cdir)
    cert_a, key_a = make_cert(cdir, "alpha")
    cert_b, key_b = make_cert(cdir, "beta")
    live_cert, live_key = os.path.join(cdir, "live.crt"), os.path.join(cdir, "live.key")
    shutil.copy(cert_a, live_cert)
    shutil.copy(key_a, live_key)
    t = ternd_factory({"tls": {"certificate": live_cert, "private_key": live_key}})
    assert _peer_der(t.port) == _file_der(cert_a)

    # an open TLS session survives the reload
    from conftest import RawSMTP
    c = RawSMTP("127.0.0.1", t.port)
    expect(c.reply(), 220)
    expect(c.ehlo(), 250)
    expect(c.starttls(), 220, "2.0.0")
    expect(c.ehlo(), 250)

    shutil.copy(cert_b, live_cert)
    shutil.copy(key_b, live_key)
    t.signal(signal.SIGHUP)
    t.wait_event("reload", status="ok")
    wait_until(lambda: _peer_der(t.port) == _file_der(cert_b), timeout=10, what="new certificate served")

    c.envelope(ehlo=False)
    expect(c.data(simple_message() + b".\r\n"), 250, "2.0.0")
    expect(c.cmd("QUIT"), 221)
    c.close()


def test_sighup_with_broken_certificate_keeps_old(ternd_factory, workdir):
    cdir = os.path.join(workdir, "certs2")
    os.makedirs(cdir)
    cert_a, key_a = make_cert(cdir, "alpha")
    live_cert, live_key = os.path.join(cdir, "live.crt"), os.path.join(cdir, "live.key")
    shutil.copy(cert_a, live_cert)
    shutil.copy(key_a, live_key)
    t = ternd_factory({"tls": {"certificate": live_cert, "private_key": live_key}})
    with open(live_cert, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
    t.signal(signal.SIGHUP)
    t.wait_event("reload", status="error")
    assert t.running()
    assert _peer_der(t.port) == _file_der(cert_a)
