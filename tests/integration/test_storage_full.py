"""A spool whose filesystem fills up: ternd refuses new mail with 452 4.3.1
before RocksDB runs out of space, survives a write error if one comes
anyway, and takes mail again once space returns, without a restart. Every
message it acknowledged is still there, intact.

The spool lives on a size-limited tmpfs the test mounts (needs root)."""
import os
import shutil
import smtplib
import subprocess
import threading
import time

import pytest

from conftest import qid_of, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small filesystem needs root")

MB = 1 << 20
SENDERS = 4
MESSAGE_BYTES = 1 * MB


@pytest.fixture
def small_fs(workdir):
    """Yields mount(size_mb, kind): a fresh filesystem of that size, "ext4"
    (an image on a loop device, as a real disk behaves: delayed allocation,
    journal) or "tmpfs"; returns its path."""
    mounts = []

    def mount(size_mb, kind="ext4", inodes=None):
        path = os.path.join(workdir, f"fs{len(mounts)}")
        os.makedirs(path)
        if kind == "tmpfs":
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", path], check=True)
        else:
            image = path + ".img"
            with open(image, "wb") as f:
                f.truncate(size_mb * MB)
            inode_args = ["-N", str(inodes)] if inodes else []
            subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", *inode_args, image], check=True, timeout=60)
            subprocess.run(["mount", "-o", "loop", image, path], check=True, timeout=60)
        mounts.append(path)
        return path

    yield mount
    for path in mounts:
        subprocess.run(["umount", "-l", path], check=False)


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def body_for(tag, n):
    line = (tag * 40)[:76].encode() + b"\r\n"
    head = f"From: a@b.test\r\nTo: x@local.test\r\nSubject: {tag}\r\nMessage-ID: <{tag}@client.test>\r\n\r\n".encode()
    return head + line * ((n - len(head)) // len(line))


class Flood:
    """SENDERS clients sending MESSAGE_BYTES messages until each has been
    refused `refusals` times in a row, or the deadline passes."""

    def __init__(self, port, deadline_s=60, refusals=5, limit=400):
        self.port = port
        self.deadline = time.monotonic() + deadline_s
        self.refusals = refusals
        self.limit = limit
        self.lock = threading.Lock()
        self.accepted = {}  # qid -> tag
        self.codes = []  # (code, enhanced text) of every refusal
        self.errors = []
        self.sent = 0

    def _one(self, i):
        in_a_row = 0
        n = 0
        while time.monotonic() < self.deadline and in_a_row < self.refusals:
            with self.lock:
                if self.sent >= self.limit:
                    return
                self.sent += 1
            tag = f"s{i}m{n}"
            n += 1
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as s:
                    s.ehlo("flood.test")
                    code, msg = s.mail("a@b.test", [f"SIZE={MESSAGE_BYTES}"])
                    if code != 250:
                        raise smtplib.SMTPResponseException(code, msg)
                    code, msg = s.rcpt("x@local.test")
                    if code != 250:
                        raise smtplib.SMTPResponseException(code, msg)
                    code, msg = s.data(body_for(tag, MESSAGE_BYTES))
                    if code != 250:
                        raise smtplib.SMTPResponseException(code, msg)
                    qid = qid_of(type("R", (), {"text": msg.decode()})())
                    with self.lock:
                        self.accepted[qid] = tag
                    in_a_row = 0
            except smtplib.SMTPResponseException as e:
                with self.lock:
                    self.codes.append((e.smtp_code, e.smtp_error.decode("utf-8", "replace")))
                in_a_row += 1
                time.sleep(0.05)
            except (OSError, smtplib.SMTPException) as e:
                with self.lock:
                    self.errors.append(repr(e))
                in_a_row += 1
                time.sleep(0.05)

    def run(self):
        threads = [threading.Thread(target=self._one, args=(i,)) for i in range(SENDERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return self


def check_intact(ternd, accepted):
    """Every acknowledged message is queued with the body that was sent."""
    queued = {e["id"] for e in ternd.queue()}
    missing = set(accepted) - queued
    assert not missing, f"{len(missing)} acknowledged messages lost: {sorted(missing)[:5]}"
    for qid, tag in accepted.items():
        stored = ternd.body_bytes(qid)
        sent = body_for(tag, MESSAGE_BYTES)
        assert stored.endswith(sent), f"{qid}: stored body differs from what was sent"


@pytest.mark.parametrize("min_free", ["100M", "1M", "0"])
def test_full_filesystem_refuses_with_452_and_keeps_running(small_fs, ternd_factory, min_free):
    fs = small_fs(256)
    spool = os.path.join(fs, "spool")
    t = ternd_factory({"queue": {"directory": spool, "min_free_space": min_free, "space_check_interval": "5s"},
                       "smtp": {"max_message_size": "4M"}})
    flood = Flood(t.port).run()
    assert t.running(), f"ternd died when the filesystem filled:\n{t.log()[-3000:]}"
    assert flood.accepted, (flood.codes[:5], flood.errors[:5])
    assert flood.codes, "the filesystem never filled: nothing was refused"
    assert all(code in (451, 452) for code, _ in flood.codes), flood.codes[:10]
    assert any(code == 452 and "4.3.1" in text for code, text in flood.codes), flood.codes[:10]
    assert not flood.errors, flood.errors[:5]
    # The floor kept RocksDB's own writes from running out of room.
    assert free_bytes(fs) > 8 * MB, free_bytes(fs)
    if min_free != "100M":
        ev = t.wait_event("min_free_space_raised")
        assert int(ev["effective"]) > int(ev["configured"])
    check_intact(t, flood.accepted)


def test_intake_resumes_when_space_returns(small_fs, ternd_factory):
    fs = small_fs(256)
    ballast = os.path.join(fs, "ballast")
    with open(ballast, "wb") as f:
        f.write(b"\0" * (96 * MB))
    t = ternd_factory({"queue": {"directory": os.path.join(fs, "spool"), "min_free_space": "0",
                                 "space_check_interval": "1s"},
                       "smtp": {"max_message_size": "4M"}})
    first = Flood(t.port).run()
    assert first.accepted and first.codes
    t.wait_event("storage_low")
    os.unlink(ballast)  # an operator makes room
    t.wait_event("storage_ok", timeout=20)
    second = Flood(t.port, refusals=1, limit=8).run()
    assert len(second.accepted) >= 4, (second.codes, second.errors)
    assert t.running()
    check_intact(t, {**first.accepted, **second.accepted})


def test_write_error_is_reported_and_recovered(small_fs, ternd_factory):
    """A write fails although the free-space check passed: here the
    filesystem runs out of inodes (another program took them), so RocksDB
    cannot create its next WAL or table file. ternd answers 451/452, logs the
    failure, stops intake, stays up, and resumes once files can be created
    again, without a restart."""
    fs = small_fs(256, inodes=256)
    t = ternd_factory({"queue": {"directory": os.path.join(fs, "spool"), "min_free_space": "0",
                                 "space_check_interval": "1s"},
                       "smtp": {"max_message_size": "4M"}})
    warm = Flood(t.port, limit=4).run()
    assert len(warm.accepted) == 4, (warm.codes, warm.errors)
    hog = os.path.join(fs, "hog")
    os.makedirs(hog)
    taken = 0
    try:
        while True:  # take every inode left
            open(os.path.join(hog, str(taken)), "wb").close()
            taken += 1
    except OSError:
        pass
    assert taken > 0
    # RocksDB needs a new file once a memtable is full (32 MiB of bodies).
    flood = Flood(t.port, deadline_s=60, refusals=3, limit=120).run()
    assert t.running(), f"ternd died on a write error:\n{t.log()[-3000:]}"
    assert flood.codes, "no write ever failed"
    assert all(code in (451, 452) for code, _ in flood.codes), flood.codes[:10]
    failures = t.events("spool_write_failed") + t.events("spool_background_error")
    assert failures, t.log()[-3000:]
    t.wait_event("storage_low", spool="failed")
    shutil.rmtree(hog)  # the other program lets go
    t.wait_event("spool_recovered", timeout=30)
    t.wait_event("storage_ok", timeout=10)
    after = Flood(t.port, refusals=1, limit=4).run()
    assert len(after.accepted) == 4, (after.codes, after.errors)
    assert t.running()
    check_intact(t, {**warm.accepted, **flood.accepted, **after.accepted})
