"""Who can read the mail: the spool, Maildirs and the control socket are the
owner's alone, and ternd started as root with [server] user runs as that
account (no root, no capabilities) while mail still flows end to end, local
delivery and POP3 included."""
import os
import poplib
import smtplib
import stat
import subprocess

import pytest

from conftest import check_config, error_lines, free_port, wait_until
from test_auth import add_user

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: starts ternd as root, reads as another user")

NOBODY_UID = 65534
NOBODY_GID = 65534
PASSWORD = "pop secret 1"
MARKER = "Xq7-unmistakable-body-marker"


def as_nobody():
    os.setgroups([])
    os.setgid(NOBODY_GID)
    os.setuid(NOBODY_UID)


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.split()
    return out


def wide_entries(root):
    """Paths under root (root included) that a group or others may use."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for p in [dirpath] + [os.path.join(dirpath, n) for n in filenames]:
            if stat.S_IMODE(os.lstat(p).st_mode) & 0o077:
                found.append((p, oct(stat.S_IMODE(os.lstat(p).st_mode))))
    return found


def send(t, rcpt, body):
    with smtplib.SMTP("127.0.0.1", t.port, timeout=10) as c:
        c.sendmail("sender@example.test", [rcpt], body)


def test_spool_is_the_owners_alone(ternd_factory):
    t = ternd_factory(start=False)
    os.makedirs(t.spool, mode=0o755)  # left wide by an older version
    os.chmod(t.spool, 0o755)
    t.start()
    send(t, "x@local.test", f"Subject: secret\r\n\r\n{MARKER}\r\n".encode())
    ev = t.wait_event("permissions_tightened", path=t.spool)
    assert ev["was"] == "0755" and ev["now"] == "0700"
    assert not wide_entries(t.spool), wide_entries(t.spool)[:5]
    assert stat.S_IMODE(os.stat(t.socket_path).st_mode) == 0o600
    # The reproduction: `grep -r` for the body as another user finds nothing.
    for d in (os.path.dirname(t.dir), t.dir):
        os.chmod(d, 0o755)
    r = subprocess.run(["grep", "-r", "-l", MARKER, t.spool], capture_output=True, text=True, timeout=30,
                       preexec_fn=as_nobody)
    assert r.stdout == "", r.stdout
    assert "Permission denied" in r.stderr
    r = subprocess.run(["grep", "-r", "-l", MARKER, t.spool], capture_output=True, text=True, timeout=30)
    assert r.stdout.strip(), "the marker should be in the spool (the check above would prove nothing)"


def test_started_as_root_runs_as_the_service_user(ternd_factory, workdir, sink_factory, cert_pair):
    # The account must reach its directories inside the test's private tree.
    for d in (os.path.dirname(workdir), workdir):
        os.chmod(d, 0o711)
    users = os.path.join(workdir, "users")
    add_user(workdir, users, "alice", "alice@local.test", password=PASSWORD)
    maildirs = os.path.join(workdir, "mail")
    sink = sink_factory()
    cert, key = cert_pair
    pop = free_port()
    t = ternd_factory({
        "server": {"user": "nobody", "group": "nogroup"},
        "tls": {"certificate": cert, "private_key": key},
        "auth": {"users_file": users},
        "local": {"maildir_root": maildirs},
        "pop3": {"listen": [f"127.0.0.1:{pop}"], "failure_delay": "100ms", "allow_plaintext": True},
        "delivery": {"enabled": True, "scan_interval": "200ms"},
        "routing": {"router": f"[127.0.0.1]:{sink.port}", "firewall": True},
    }, start=False)
    os.chmod(t.dir, 0o711)
    t.start()
    ev = t.wait_event("privileges_dropped")
    assert ev["user"] == "nobody" and ev["uid"] == str(NOBODY_UID)
    status = proc_status(t.proc.pid)
    assert status["Uid"] == [str(NOBODY_UID)] * 4, status["Uid"]
    assert status["Gid"] == [str(NOBODY_GID)] * 4, status["Gid"]
    assert status["Groups"] in ([], [str(NOBODY_GID)]), status["Groups"]
    for caps in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(status[caps][0], 16) == 0, (caps, status[caps])
    assert status["NoNewPrivs"] == ["1"]
    # Every thread, not just the main one.
    for tid in os.listdir(f"/proc/{t.proc.pid}/task"):
        assert proc_status(f"{t.proc.pid}/task/{tid}")["Uid"] == [str(NOBODY_UID)] * 4
    assert os.stat(t.spool).st_uid == NOBODY_UID

    # Relayed mail leaves; local mail lands in a Maildir the account owns; POP3 reads it.
    send(t, "someone@elsewhere.test", b"Subject: out\r\n\r\nrelayed\r\n")
    wait_until(lambda: sink.report()["messages"] >= 1, 20, what="the relayed message at the sink")
    send(t, "alice@local.test", f"Subject: in\r\n\r\n{MARKER}\r\n".encode())
    new = os.path.join(maildirs, "alice", "new")
    files = wait_until(lambda: os.path.isdir(new) and os.listdir(new), 20, what="local delivery")
    path = os.path.join(new, files[0])
    assert os.stat(path).st_uid == NOBODY_UID
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0
    p = poplib.POP3("127.0.0.1", pop, timeout=10)
    p.user("alice")
    p.pass_(PASSWORD)
    count, _ = p.stat()
    assert count == 1
    _, lines, _ = p.retr(1)
    assert MARKER.encode() in lines
    p.quit()
    assert t.ternctl("queue").returncode == 0
    assert t.stop() == 0
    # A socket the account could not remove is not mistaken for a live ternd.
    assert t.ternctl("queue").returncode == 3
    t.start()
    assert t.ternctl("queue").returncode == 0


def test_service_user_must_exist(workdir):
    r = check_config(workdir, '[server]\nuser = "no-such-user-tern"\n')
    assert r.returncode != 0
    assert any("line 2" in l and "server.user" in l and "no such user" in l for l in error_lines(r)), r.stderr
    r = check_config(workdir, '[server]\ngroup = "nogroup"\n')
    assert r.returncode != 0 and "needs server.user" in r.stderr
