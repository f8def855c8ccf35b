"""SMTP AUTH (RFC 4954) and message submission (RFC 6409 on 587, RFC 8314
implicit TLS on 465), with real clients: Python's smtplib and swaks.

Users come from a directory file written by `ternctl user add`; passwords
are crypt(3) yescrypt hashes checked by libcrypt.
"""
import base64
import os
import shutil
import smtplib
import ssl
import subprocess

import pytest

from conftest import TERNCTL, free_port, wait_until

PASSWORD = "correct horse battery staple"


def client_tls():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def add_user(workdir, users_file, name, *addresses, password=PASSWORD):
    cfg = os.path.join(workdir, f"users-{name}.toml")
    with open(cfg, "w") as f:
        f.write(f'[auth]\nusers_file = "{users_file}"\n')
    r = subprocess.run([TERNCTL, "--config", cfg, "user", "add", name, *addresses], input=password + "\n",
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture
def auth_ternd(ternd_factory, workdir, cert_pair):
    """ternd with TLS, a submission (587-style) and a submissions (465-style)
    listener, a user alice who owns alice@local.test, and relaying only for
    authenticated clients (mode "domains": 127.0.0.1 is not a relay address)."""
    users = os.path.join(workdir, "users")
    add_user(workdir, users, "alice", "alice@local.test")

    def make(**sections):
        cert, key = cert_pair
        sub, subs = free_port(), free_port()
        cfg = {
            "tls": {"certificate": cert, "private_key": key},
            "smtp": {"submission": [f"127.0.0.1:{sub}"], "submissions": [f"127.0.0.1:{subs}"]},
            "relay": {"mode": "domains"},
            "auth": {"users_file": users, "failure_delay": "100ms"},
        }
        for key_, value in sections.items():
            cfg.setdefault(key_, {}).update(value)
        t = ternd_factory(cfg)
        t.submission, t.submissions = sub, subs
        return t
    return make


def submit(port, user="alice", password=PASSWORD, sender="alice@local.test", rcpts=("bob@elsewhere.example",),
           implicit_tls=False):
    if implicit_tls:
        c = smtplib.SMTP_SSL("127.0.0.1", port, timeout=10, context=client_tls())
    else:
        c = smtplib.SMTP("127.0.0.1", port, timeout=10)
        c.ehlo("client.test")
        c.starttls(context=client_tls())
    with c:
        c.ehlo("client.test")
        c.login(user, password)
        return c.sendmail(sender, list(rcpts), b"Subject: s\r\n\r\nhello\r\n")


def test_submission_on_587_needs_starttls_then_auth(auth_ternd):
    t = auth_ternd()
    with smtplib.SMTP("127.0.0.1", t.submission, timeout=10) as c:
        code, text = c.ehlo("client.test")
        assert b"STARTTLS" in text and b"AUTH" not in text  # no passwords in the clear
        code, msg = c.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice\0" + PASSWORD.encode()).decode())
        assert code == 538 and msg.startswith(b"5.7.11"), (code, msg)
        code, msg = c.mail("alice@local.test")
        assert code == 530 and msg.startswith(b"5.7.0"), (code, msg)
        c.starttls(context=client_tls())
        code, text = c.ehlo("client.test")
        assert b"AUTH PLAIN LOGIN" in text
        code, msg = c.mail("alice@local.test")
        assert code == 530, (code, msg)
    assert submit(t.submission) == {}
    ev = t.wait_event("auth", user="alice")
    assert ev["mechanism"] == "plain"
    t.wait_event("received", nrcpt="1")


def test_submissions_on_465_is_tls_from_the_first_byte(auth_ternd):
    t = auth_ternd()
    assert submit(t.submissions, implicit_tls=True) == {}
    received = t.wait_event("received")
    body = t.body(received["qid"])
    # RFC 3848: ESMTPSA = ESMTP with TLS and AUTH; the password never appears.
    assert "with ESMTPSA" in body
    assert PASSWORD not in body


def test_auth_login_mechanism(auth_ternd):
    t = auth_ternd()
    with smtplib.SMTP_SSL("127.0.0.1", t.submissions, timeout=10, context=client_tls()) as c:
        c.ehlo("client.test")
        c.user, c.password = "alice", PASSWORD
        code, msg = c.auth("LOGIN", c.auth_login, initial_response_ok=False)
        assert code == 235, (code, msg)


def plain(user, password):
    return "PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def test_wrong_password_is_refused_and_too_many_failures_block_the_client(auth_ternd):
    t = auth_ternd(auth={"max_failures": 2, "failure_block_time": "1m"})
    with smtplib.SMTP_SSL("127.0.0.1", t.submissions, timeout=10, context=client_tls()) as c:
        c.ehlo("client.test")
        code, msg = c.docmd("AUTH", plain("alice", "wrong"))
        assert code == 535 and msg.startswith(b"5.7.8"), (code, msg)
        # An unknown user gets the same answer: nothing tells which users exist.
        code, msg = c.docmd("AUTH", plain("nobody", "wrong"))
        assert code == 421 and msg.startswith(b"4.7.0"), (code, msg)
    # The address is refused for failure_block_time, on every listener.
    with pytest.raises(smtplib.SMTPConnectError) as e:
        smtplib.SMTP("127.0.0.1", t.submission, timeout=10)
    assert e.value.smtp_code == 421
    assert t.wait_event("auth_failed", user="nobody")["failures"] == "2"


def test_unknown_user_and_wrong_password_look_the_same(auth_ternd):
    t = auth_ternd()
    with smtplib.SMTP_SSL("127.0.0.1", t.submissions, timeout=10, context=client_tls()) as c:
        c.ehlo("client.test")
        assert c.docmd("AUTH", plain("alice", "wrong")) == c.docmd("AUTH", plain("nobody", "wrong"))


def test_malformed_and_cancelled_auth(auth_ternd):
    t = auth_ternd()
    with smtplib.SMTP_SSL("127.0.0.1", t.submissions, timeout=10, context=client_tls()) as c:
        c.ehlo("client.test")
        code, msg = c.docmd("AUTH", "PLAIN not-base64!")
        assert code == 501, (code, msg)
        code, msg = c.docmd("AUTH", "CRAM-MD5")
        assert code == 504, (code, msg)
        code, _ = c.docmd("AUTH", "PLAIN")
        assert code == 334
        code, msg = c.docmd("*")
        assert code == 501 and msg.startswith(b"5.0.0"), (code, msg)
        code, msg = c.docmd("AUTH", plain("alice", PASSWORD))
        assert code == 235, (code, msg)
        code, msg = c.docmd("AUTH", plain("alice", PASSWORD))
        assert code == 503, (code, msg)


def test_authenticated_clients_relay_and_others_do_not(auth_ternd):
    t = auth_ternd()
    # Port 25 style listener, mode "domains": no relaying without AUTH ...
    with smtplib.SMTP("127.0.0.1", t.port, timeout=10) as c:
        c.ehlo("client.test")
        c.mail("x@y.test")
        code, msg = c.rcpt("bob@elsewhere.example")
        assert code == 554 and msg.startswith(b"5.7.1"), (code, msg)
        c.starttls(context=client_tls())
        c.ehlo("client.test")
        c.login("alice", PASSWORD)
        c.mail("alice@local.test")
        code, msg = c.rcpt("bob@elsewhere.example")
        assert code == 250, (code, msg)


def test_block_all_refuses_relay_even_after_auth(auth_ternd):
    t = auth_ternd(relay={"mode": "block_all"})
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        submit(t.submission)
    assert submit(t.submission, rcpts=("alice@local.test",)) == {}


def test_sender_must_belong_to_the_authenticated_user(auth_ternd):
    t = auth_ternd(auth={"sender_check": "all"})
    with pytest.raises(smtplib.SMTPSenderRefused) as e:
        submit(t.submission, sender="ceo@local.test")
    assert e.value.smtp_code == 553 and e.value.smtp_error.startswith(b"5.7.1")
    assert submit(t.submission, sender="Alice@LOCAL.test") == {}
    t.wait_event("sender_rejected", user="alice")


def test_sender_check_exempts_listed_users(auth_ternd):
    t = auth_ternd(auth={"sender_check": "unlisted", "sender_check_exempt": ["alice"]})
    assert submit(t.submission, sender="ceo@local.test") == {}


def test_require_all_on_the_mta_listener(auth_ternd):
    t = auth_ternd(auth={"require": "all"})
    with smtplib.SMTP("127.0.0.1", t.port, timeout=10) as c:
        c.ehlo("client.test")
        code, msg = c.mail("x@y.test")
        assert code == 530, (code, msg)


def test_plaintext_auth_only_when_allowed(auth_ternd):
    t = auth_ternd(auth={"allow_plaintext": True})
    with smtplib.SMTP("127.0.0.1", t.submission, timeout=10) as c:
        c.ehlo("client.test")
        c.login("alice", PASSWORD)
        assert c.sendmail("alice@local.test", ["bob@elsewhere.example"], b"Subject: s\r\n\r\nx\r\n") == {}


def test_swaks_submits_over_465(auth_ternd):
    swaks = shutil.which("swaks")
    assert swaks, "swaks missing (Debian package swaks)"
    t = auth_ternd()
    r = subprocess.run([swaks, "--server", "127.0.0.1", "--port", str(t.submissions), "--tls-on-connect",
                        "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", PASSWORD,
                        "--from", "alice@local.test", "--to", "bob@elsewhere.example", "--timeout", "10"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "235 2.7.0" in r.stdout
    wait_until(lambda: len(t.queue()) == 1, 10, what="the message in the queue")


def test_users_file_is_reloaded_on_sighup(auth_ternd, workdir):
    t = auth_ternd()
    with pytest.raises(smtplib.SMTPAuthenticationError):
        submit(t.submission, user="bob", password="bobs secret", sender="bob@local.test")
    add_user(workdir, os.path.join(workdir, "users"), "bob", "bob@local.test", password="bobs secret")
    import signal
    t.proc.send_signal(signal.SIGHUP)
    t.wait_event("reload", status="ok")
    assert submit(t.submission, user="bob", password="bobs secret", sender="bob@local.test") == {}
