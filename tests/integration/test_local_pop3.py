"""Local delivery into Maildirs and the POP3 server, end to end, with
clients nobody here wrote: swaks and smtplib to send, Python's poplib, curl
(pop3:// and pop3s://) and fetchmail to read.
"""
import os
import poplib
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from conftest import free_port, wait_until
from test_auth import add_user

PASSWORD = "pop secret 1"
BODY = (b"Subject: hello\r\nMessage-ID: <m1@example.test>\r\n\r\nfirst line\r\n"
        b".starts with a dot\r\n\r\nlast line\r\n")


def tls_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@pytest.fixture
def mail_ternd(ternd_factory, workdir, cert_pair):
    """A ternd that delivers local.test mail into Maildirs and serves them
    over POP3 (110-style with STLS, and 995-style implicit TLS). Users:
    alice (alice@local.test), bob (bob@local.test); alias sales@local.test
    -> alice, bob."""
    users = os.path.join(workdir, "users")
    add_user(workdir, users, "alice", "alice@local.test", password=PASSWORD)
    add_user(workdir, users, "bob", "bob@local.test", password=PASSWORD)
    with open(users, "a") as f:
        f.write("alias sales@local.test alice bob\n")
    maildirs = os.path.join(workdir, "mail")

    def make(**sections):
        cert, key = cert_pair
        pop, pops = free_port(), free_port()
        cfg = {
            "tls": {"certificate": cert, "private_key": key},
            "auth": {"users_file": users},
            "local": {"maildir_root": maildirs},
            "pop3": {"listen": [f"127.0.0.1:{pop}"], "listen_tls": [f"127.0.0.1:{pops}"],
                     "failure_delay": "100ms"},
            "delivery": {"enabled": True, "scan_interval": "200ms"},
        }
        for key_, value in sections.items():
            cfg.setdefault(key_, {}).update(value)
        t = ternd_factory(cfg)
        t.pop3, t.pop3s, t.maildirs = pop, pops, maildirs
        return t
    return make


def maildir_files(t, user):
    new = os.path.join(t.maildirs, user, "new")
    cur = os.path.join(t.maildirs, user, "cur")
    out = []
    for d in (new, cur):
        if os.path.isdir(d):
            out += [os.path.join(d, n) for n in sorted(os.listdir(d))]
    return out


def wait_delivered(t, user, n=1):
    return wait_until(lambda: len(f := maildir_files(t, user)) >= n and f, 20, what=f"{n} message(s) for {user}")


def send(t, rcpts, body=BODY, sender="sender@example.test"):
    with smtplib.SMTP("127.0.0.1", t.port, timeout=10) as c:
        c.sendmail(sender, list(rcpts), body)


def pop_login(t, user="alice", password=PASSWORD, implicit=False):
    if implicit:
        p = poplib.POP3_SSL("127.0.0.1", t.pop3s, timeout=10, context=tls_ctx())
    else:
        p = poplib.POP3("127.0.0.1", t.pop3, timeout=10)
        p.stls(context=tls_ctx())
    p.user(user)
    p.pass_(password)
    return p


def test_swaks_to_a_local_user_lands_in_the_maildir_and_pop3_returns_it(mail_ternd):
    swaks = shutil.which("swaks")
    assert swaks
    t = mail_ternd()
    r = subprocess.run([swaks, "--server", "127.0.0.1", "--port", str(t.port), "--from", "sender@example.test",
                        "--to", "alice@local.test", "--header", "Subject: via swaks", "--body", "hello alice",
                        "--timeout", "10"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    [path] = wait_delivered(t, "alice")
    with open(path, "rb") as f:
        stored = f.read()
    # Maildir convention: LF line ends; our trace headers first.
    assert stored.startswith(b"Return-Path: <sender@example.test>\nDelivered-To: alice@local.test\n")
    assert b"\r\n" not in stored
    assert b"Subject: via swaks" in stored
    p = pop_login(t)
    count, size = p.stat()
    assert count == 1
    resp, lines, octets = p.retr(1)
    assert resp.startswith(b"+OK")
    # Exactly the stored message, as CRLF lines: LIST's size is exact.
    assert b"\r\n".join(lines) + b"\r\n" == stored.replace(b"\n", b"\r\n")
    assert size == len(stored.replace(b"\n", b"\r\n"))
    p.quit()
    t.wait_event("pop3_login", user="alice")


def test_message_comes_back_byte_for_byte_with_dot_stuffing_undone(mail_ternd):
    t = mail_ternd()
    send(t, ["alice@local.test"])
    wait_delivered(t, "alice")
    p = pop_login(t, implicit=True)
    _, lines, _ = p.retr(1)
    text = b"\r\n".join(lines) + b"\r\n"
    assert text.endswith(BODY), text  # after our Return-Path/Delivered-To/Received headers
    assert p.list()[1] == [f"1 {len(text)}".encode()]
    p.quit()


def test_alias_fans_out_and_plus_addressing(mail_ternd):
    t = mail_ternd()
    send(t, ["sales@local.test", "bob+lists@local.test"])
    wait_delivered(t, "alice")
    wait_delivered(t, "bob", 2)


def test_unknown_local_user_is_refused_at_rcpt(mail_ternd):
    t = mail_ternd()
    with smtplib.SMTP("127.0.0.1", t.port, timeout=10) as c:
        c.ehlo("client.test")
        c.mail("sender@example.test")
        code, msg = c.rcpt("nobody@local.test")
        assert code == 550 and msg.startswith(b"5.1.1"), (code, msg)
        assert c.rcpt("alice@local.test")[0] == 250


def test_notify_success_gets_action_delivered(mail_ternd):
    t = mail_ternd()
    with smtplib.SMTP("127.0.0.1", t.port, timeout=10) as c:
        c.ehlo("client.test")
        c.sendmail("sender@example.test", ["alice@local.test"], BODY, rcpt_options=["NOTIFY=SUCCESS"])
    ev = t.wait_event("dsn_queued", timeout=20)
    assert ev["action"] == "delivered" and ev["to"] == "sender@example.test", ev


def test_a_full_mailbox_in_an_alias_does_not_repeat_the_other_copies(mail_ternd):
    t = mail_ternd(local={"user_quotas": {"alice": 450}}, retry={"first": {"count": 3, "interval": "1s"}})
    send(t, ["alice@local.test"])  # fills most of alice's 450 bytes
    wait_delivered(t, "alice")
    send(t, ["sales@local.test"])
    wait_delivered(t, "bob")
    # alice's copy goes on as a message of its own, which waits for room.
    assert t.wait_event("forwarded", rcpt="sales@local.test")
    t.wait_event("deferred", rcpt="alice@local.test", dsn="4.2.2", timeout=20)
    for _ in range(2):
        t.ternctl("flush")
        time.sleep(0.5)
    assert len(maildir_files(t, "bob")) == 1
    assert len(maildir_files(t, "alice")) == 1


def test_a_user_quota_applies_to_that_user_only(mail_ternd):
    t = mail_ternd(local={"user_quotas": {"alice": 450}})
    send(t, ["alice@local.test"])
    wait_delivered(t, "alice")
    send(t, ["alice@local.test", "bob@local.test"])
    ev = t.wait_event("deferred", rcpt="alice@local.test", timeout=20)
    assert ev["dsn"] == "4.2.2", ev
    wait_delivered(t, "bob")
    assert len(maildir_files(t, "alice")) == 1


def test_quota_exceeded_is_temporary_or_permanent(mail_ternd):
    permanent = mail_ternd(local={"quota": 450, "quota_permanent": True})
    send(permanent, ["alice@local.test"])
    wait_delivered(permanent, "alice")
    send(permanent, ["alice@local.test"])
    ev = permanent.wait_event("undeliverable", rcpt="alice@local.test", timeout=20)
    assert ev["dsn"] == "5.2.2", ev
    # A message larger than the whole quota fails at once, whatever the setting.
    small = mail_ternd(local={"quota": 100})
    send(small, ["bob@local.test"])
    ev = small.wait_event("undeliverable", rcpt="bob@local.test", timeout=20)
    assert ev["dsn"] == "5.2.2", ev


def test_forwarding_loop_is_refused(mail_ternd):
    t = mail_ternd()
    send(t, ["alice@local.test"], body=b"Delivered-To: alice@local.test\r\nSubject: loop\r\n\r\nx\r\n")
    ev = t.wait_event("undeliverable", rcpt="alice@local.test", timeout=20)
    assert ev["dsn"] == "5.4.6", ev


# ---- POP3 ----

def test_every_verb_with_poplib(mail_ternd):
    t = mail_ternd()
    for i in range(3):
        send(t, ["alice@local.test"], body=b"Subject: m%d\r\n\r\nbody %d\r\nline two\r\n" % (i, i))
    wait_delivered(t, "alice", 3)
    p = poplib.POP3("127.0.0.1", t.pop3, timeout=10)
    caps = p.capa()
    assert "STLS" in caps and "USER" not in caps  # no clear-text passwords before TLS
    with pytest.raises(poplib.error_proto):
        p.user("alice")
    p.stls(context=tls_ctx())
    caps = p.capa()
    for cap in ("TOP", "UIDL", "USER", "SASL", "RESP-CODES"):
        assert cap in caps, caps
    p.user("alice")
    p.pass_(PASSWORD)
    count, total = p.stat()
    assert count == 3
    _, listing, _ = p.list()
    sizes = [int(l.split()[1]) for l in listing]
    assert sum(sizes) == total
    assert p.list(2).split()[2] == str(sizes[1]).encode()
    _, uids, _ = p.uidl()
    assert len(set(uids)) == 3
    _, top, _ = p.top(1, 1)
    assert any(l.startswith(b"Subject: m0") for l in top) and top[-1] == b"body 0"
    assert p.noop().startswith(b"+OK")
    p.dele(1)
    assert p.stat()[0] == 2
    with pytest.raises(poplib.error_proto):
        p.retr(1)
    p.rset()
    assert p.stat()[0] == 3
    p.dele(2)
    p.quit()
    assert len(maildir_files(t, "alice")) == 2


def test_uids_are_stable_across_sessions_and_restarts(mail_ternd):
    t = mail_ternd()
    send(t, ["alice@local.test"])
    send(t, ["alice@local.test"])
    wait_delivered(t, "alice", 2)
    p = pop_login(t)
    first = p.uidl()[1]
    p.quit()
    t.stop()
    t.start(keep_port=True)
    p = pop_login(t, implicit=True)
    assert p.uidl()[1] == first
    p.quit()


def test_dele_then_disconnect_deletes_nothing(mail_ternd):
    t = mail_ternd()
    send(t, ["alice@local.test"])
    wait_delivered(t, "alice")
    p = pop_login(t)
    p.dele(1)
    p.sock.shutdown(socket.SHUT_RDWR)  # no QUIT: no UPDATE state
    p.sock.close()
    p = wait_until(lambda: try_login(t), 10, what="the mailbox to be free again")
    assert p.stat()[0] == 1
    p.quit()


def try_login(t):
    try:
        return pop_login(t)
    except poplib.error_proto:
        return None


def test_second_session_gets_in_use(mail_ternd):
    t = mail_ternd()
    first = pop_login(t)
    with pytest.raises(poplib.error_proto) as e:
        pop_login(t)
    assert b"[IN-USE]" in e.value.args[0]
    first.quit()
    pop_login(t).quit()


def test_shutdown_tells_idle_pop3_sessions_and_waits_for_them(mail_ternd):
    # A POP3 session waiting for a command is asked to end like an SMTP one:
    # it answers -ERR [SYS/TEMP] before the connection closes (it used to be
    # dropped unannounced when the loop stopped, its frame never freed).
    t = mail_ternd()
    logged_in = pop_login(t)
    refused = poplib.POP3("127.0.0.1", t.pop3, timeout=10)  # still in AUTHORIZATION
    t.signal(signal.SIGTERM)
    for p in (logged_in, refused):
        line = p.file.readline()
        assert line.startswith(b"-ERR [SYS/TEMP]"), line
        assert p.file.readline() == b""  # then the server closes
    assert t.wait_exit() == 0
    t.stopped_by_test = True
    log = t.log()
    assert "drained=yes" in log
    assert log.count("event=disconnect") >= 2


def test_wrong_password_and_unknown_user_look_the_same(mail_ternd):
    t = mail_ternd()
    answers = []
    for user in ("alice", "nobody"):
        p = poplib.POP3_SSL("127.0.0.1", t.pop3s, timeout=10, context=tls_ctx())
        p.user(user)
        with pytest.raises(poplib.error_proto) as e:
            p.pass_("wrong")
        answers.append(e.value.args[0])
    assert answers[0] == answers[1]


def test_login_timeout_closes_an_idle_session(mail_ternd):
    t = mail_ternd(pop3={"login_timeout": "1s"})
    with socket.create_connection(("127.0.0.1", t.pop3), timeout=10) as s:
        assert s.recv(512).startswith(b"+OK")
        started = time.monotonic()
        while s.recv(512):
            pass
        assert time.monotonic() - started < 5


def test_curl_reads_pop3_and_pop3s(mail_ternd):
    curl = shutil.which("curl")
    assert curl
    t = mail_ternd()
    send(t, ["alice@local.test"])
    wait_delivered(t, "alice")
    for url, extra in ((f"pop3://127.0.0.1:{t.pop3}/1", ["--ssl-reqd"]), (f"pop3s://127.0.0.1:{t.pop3s}/1", [])):
        r = subprocess.run([curl, "-s", "-k", *extra, "--user", f"alice:{PASSWORD}", url],
                           capture_output=True, timeout=30)
        assert r.returncode == 0, (url, r.returncode, r.stderr)
        assert b"first line" in r.stdout and b".starts with a dot" in r.stdout


def test_pop_before_smtp_end_to_end(mail_ternd):
    t = mail_ternd(relay={"mode": "pop_before_smtp"})

    def relay_reply():
        with smtplib.SMTP("127.0.0.1", t.port, timeout=10) as c:
            c.ehlo("client.test")
            c.mail("alice@local.test")
            return c.rcpt("someone@elsewhere.example")[0]

    assert relay_reply() == 554
    pop_login(t).quit()
    assert relay_reply() == 250
    # A short window for the test (the configured one is minutes long).
    assert t.ternctl("popauth", "add", "127.0.0.1", "1s").returncode == 0
    time.sleep(1.5)
    assert relay_reply() == 554


def test_fetchmail_retrieves_over_pop3s(mail_ternd, workdir):
    fetchmail = shutil.which("fetchmail")
    assert fetchmail, "fetchmail missing (Debian package fetchmail)"
    t = mail_ternd()
    send(t, ["alice@local.test"])
    wait_delivered(t, "alice")
    out = os.path.join(workdir, "fetched.mbox")
    rc = os.path.join(workdir, "fetchmailrc")
    with open(rc, "w") as f:
        f.write(f'set no bouncemail\n'
                f'poll 127.0.0.1 service {t.pop3s} protocol POP3 auth password timeout 20\n'
                f'  user "alice" password "{PASSWORD}" ssl no sslcertck\n'
                f'  mda "cat >> {out}"\n')
    os.chmod(rc, 0o600)
    env = dict(os.environ, HOME=workdir, FETCHMAILHOME=workdir)
    r = subprocess.run([fetchmail, "--fetchmailrc", rc, "--nosyslog", "--nodetach", "--fetchall"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    with open(out, "rb") as f:
        assert b"first line" in f.read()
    # fetchmail deletes what it fetched (no "keep"): the maildrop is empty now.
    wait_until(lambda: maildir_files(t, "alice") == [], 10, what="an empty maildrop")


def test_failed_logins_are_limited_per_user_and_per_address(mail_ternd):
    t = mail_ternd(auth={"user_failures_per_minute": 2}, pop3={"max_failures": 2})
    for _ in range(2):
        p = poplib.POP3_SSL("127.0.0.1", t.pop3s, timeout=10, context=tls_ctx())
        p.user("bob")
        with pytest.raises(poplib.error_proto):
            p.pass_("wrong")
        p.close()
    # bob's password is now refused whoever sends it, even when right ...
    p = poplib.POP3_SSL("127.0.0.1", t.pop3s, timeout=10, context=tls_ctx())
    p.user("bob")
    with pytest.raises(poplib.error_proto):
        p.pass_(PASSWORD)
    p.close()
    assert t.wait_event("pop3_login_failed", user_locked="yes")
    # ... other users are not affected, and an address that fails
    # pop3.max_failures times in one session is refused for a while.
    pop_login(t, "alice").quit()
    p = poplib.POP3_SSL("127.0.0.1", t.pop3s, timeout=10, context=tls_ctx())
    for _ in range(2):
        p.user("alice")
        with pytest.raises(poplib.error_proto):
            p.pass_("wrong")
    with pytest.raises(poplib.error_proto) as e:
        poplib.POP3("127.0.0.1", t.pop3, timeout=10)
    assert b"[SYS/TEMP]" in e.value.args[0]


class SourcedPOP3(poplib.POP3):
    """poplib.POP3 from a chosen loopback source address."""

    def __init__(self, host, port, source, timeout=10):
        self._source = source
        super().__init__(host, port, timeout)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(self._source, 0))


def test_a_pop_login_lets_a_restricted_client_through(mail_ternd):
    t = mail_ternd(restrictions={"deny": ["127.0.0.2/32"], "override": True}, pop3={"allow_plaintext": True})

    def mail_reply():
        with smtplib.SMTP("127.0.0.1", t.port, timeout=10, source_address=("127.0.0.2", 0)) as c:
            c.ehlo("client.test")
            return c.mail("alice@local.test")[0]

    assert mail_reply() == 554
    p = SourcedPOP3("127.0.0.1", t.pop3, "127.0.0.2")
    p.user("alice")
    p.pass_(PASSWORD)
    p.quit()
    assert mail_reply() == 250
