"""Delivery status notifications, end to end.

ternd delivers to tern-sink instances on loopback (dnsmasq answers for the
.test domains): dest.test is the destination (with fault injection where a
test needs failures), example.test the sender's mailbox and pm.test the
postmaster's, both a Maildir-storing sink. Every notice that arrives is read
by parsers nobody here wrote: Python's email package (the MIME tree) and
Debian's flufl.bounce (which recipients failed).
"""
import email
import email.policy
import os
import subprocess

import pytest
from flufl.bounce import all_failures, scan_message

from conftest import delivering_ternd, free_port, sink_on, wait_until

SENDER = "alice@example.test"
POSTMASTER = "postmaster@pm.test"
BODY = "Subject: quarterly report\r\nMessage-ID: <orig-1@example.test>\r\n\r\nThe numbers.\r\n"


class Mailbox:
    """The Maildir of a storing sink, message by message."""

    def __init__(self, path):
        self.path = path

    def messages(self):
        new = os.path.join(self.path, "new")
        if not os.path.isdir(new):
            return []
        out = []
        for name in sorted(os.listdir(new)):
            with open(os.path.join(new, name), "rb") as f:
                raw = f.read()
            out.append(email.message_from_bytes(raw, policy=email.policy.default))
        return out

    def raw(self, rcpt):
        new = os.path.join(self.path, "new")
        out = []
        for name in sorted(os.listdir(new)):
            with open(os.path.join(new, name), "rb") as f:
                data = f.read()
            if f"X-Tern-Sink-Rcpt: <{rcpt}>".encode() in data:
                out.append(data)
        return out

    def for_rcpt(self, rcpt):
        return [m for m in self.messages() if m["X-Tern-Sink-Rcpt"] == f"<{rcpt}>"]

    def wait(self, rcpt, n=1, timeout=30):
        return wait_until(lambda: len(got := self.for_rcpt(rcpt)) >= n and got, timeout,
                          what=f"{n} message(s) for {rcpt}")


@pytest.fixture
def world(ternd_factory, dns_factory, sink_factory, workdir):
    """DNS, the sender's and postmaster's mailbox sink; `make` adds the
    destination sink and ternd."""
    port = free_port()
    dns = dns_factory("--host-record=dest.test,127.0.0.2", "--host-record=example.test,127.0.0.3",
                      "--host-record=pm.test,127.0.0.3")
    maildir = os.path.join(workdir, "mailboxes")
    sink_on(sink_factory, "127.0.0.3", port, "--maildir", maildir)

    class World:
        mailbox = Mailbox(maildir)

        def make(self, *dest_args, **sections):
            self.dest = sink_on(sink_factory, "127.0.0.2", port, *dest_args)
            dsn = {"postmaster": POSTMASTER}
            dsn.update(sections.pop("dsn", {}))
            self.ternd = delivering_ternd(ternd_factory, dns, port, dsn=dsn, **sections)
            return self.ternd

    return World()


def send(ternd, rcpts, sender=SENDER, body=BODY, mail_options=(), rcpt_options=()):
    import smtplib
    with smtplib.SMTP("127.0.0.1", ternd.port, timeout=10) as c:
        c.ehlo("client.test")
        c.sendmail(sender, list(rcpts), body.encode() if isinstance(body, str) else body,
                   mail_options=list(mail_options), rcpt_options=list(rcpt_options))


def parts(report):
    """The content types of a multipart/report's parts, in order."""
    assert report.get_content_type() == "multipart/report", report.get_content_type()
    assert report.get_param("report-type") == "delivery-status"
    return [p.get_content_type() for p in report.iter_parts()]


def status_groups(report):
    """The delivery-status part as field dicts: [per-message, per-recipient...]."""
    part = [p for p in report.iter_parts() if p.get_content_type().endswith("delivery-status")][0]
    # email parses message/delivery-status into a list of header blocks.
    return [dict((k, str(v)) for k, v in block.items()) for block in part.get_payload()]


def test_permanent_failure_returns_the_message_and_copies_the_postmaster(world):
    t = world.make("--fault", "rcpt=550", dsn={"failure_copy": POSTMASTER, "failure_copy_content": False})
    send(t, ["bob@dest.test"], mail_options=["RET=FULL", "ENVID=QQ+2B314"],
         rcpt_options=["ORCPT=rfc822;Bob.Original@dest.test"])
    [report] = world.mailbox.wait(SENDER)
    # From <> (RFC 3461 §6.2), marked as automatic (RFC 3834).
    assert report["Return-Path"] == "<>"
    assert report["Auto-Submitted"] == "auto-replied"
    assert report["In-Reply-To"] == "<orig-1@example.test>"
    assert report["From"].addresses[0].username == "MAILER-DAEMON"
    assert parts(report) == ["text/plain", "message/delivery-status", "message/rfc822"]
    per_message, per_rcpt = status_groups(report)
    assert per_message["Reporting-MTA"] == "dns; mx.test.invalid"
    assert per_message["Original-Envelope-Id"] == "QQ+314"
    assert "Arrival-Date" in per_message
    assert per_rcpt["Final-Recipient"] == "rfc822; bob@dest.test"
    assert per_rcpt["Original-Recipient"] == "rfc822; Bob.Original@dest.test"
    assert per_rcpt["Action"] == "failed"
    assert per_rcpt["Status"] == "5.0.0"
    assert per_rcpt["Remote-MTA"] == "dns; dest.test"
    assert per_rcpt["Diagnostic-Code"] == "smtp; 550 5.0.0 tern-sink injected fault"
    assert "Last-Attempt-Date" in per_rcpt
    returned = report.get_payload()[2].get_payload()[0]
    assert returned["Subject"] == "quarterly report"
    assert "The numbers." in returned.get_content()
    assert "bob@dest.test" in report.get_payload()[0].get_content()
    # flufl.bounce, which mailing-list software uses to find bad addresses,
    # names the address the sender used: the original recipient.
    assert scan_message(report) == {b"Bob.Original@dest.test"}
    # The postmaster's copy: the report without the message.
    [copy] = world.mailbox.wait(POSTMASTER)
    assert copy["Subject"].startswith("Postmaster Copy")
    assert parts(copy) == ["text/plain", "message/delivery-status"]
    assert scan_message(copy) == {b"Bob.Original@dest.test"}
    ev = t.wait_event("dsn_queued", audience="sender")
    assert ev["to"] == SENDER and ev["action"] == "failed"
    t.wait_event("dsn_queued", audience="postmaster_copy", to=POSTMASTER)


LARGE = BODY + "All the numbers, one by one.\r\n" * 200


@pytest.mark.parametrize("mail_options,dsn,expected", [
    (["RET=HDRS"], {}, "text/rfc822-headers"),
    ([], {"max_returned_size": 2000}, "text/rfc822-headers"),
    ([], {}, "message/rfc822"),
])
def test_returned_content_follows_ret_and_the_size_limit(world, mail_options, dsn, expected):
    t = world.make("--fault", "rcpt=550", dsn=dsn)
    send(t, ["bob@dest.test"], mail_options=mail_options, body=LARGE)
    [report] = world.mailbox.wait(SENDER)
    assert parts(report)[2] == expected
    if expected == "text/rfc822-headers":
        headers = report.get_payload()[2].get_content()
        assert "Subject: quarterly report" in headers
        assert "The numbers." not in headers


def test_partial_failure_reports_only_the_failed_recipient(world):
    t = world.make("--fault", "rcpt=550:0.5")
    send(t, ["a@dest.test", "b@dest.test"])
    [report] = world.mailbox.wait(SENDER)
    groups = status_groups(report)
    assert len(groups) == 2, groups
    failed = groups[1]["Final-Recipient"].split("; ")[1]
    delivered = t.wait_event("delivered")["rcpt"]
    assert {failed, delivered} == {"a@dest.test", "b@dest.test"}
    assert scan_message(report) == {failed.encode()}


def test_temporary_failure_gives_a_delay_notice_then_a_failure(world):
    t = world.make("--fault", "rcpt=451",
                   retry={"first": {"count": 1, "interval": "1s"}, "second": {"interval": "1s"}, "max_age": "6s"})
    send(t, ["slow@dest.test"])
    [delay, failure] = world.mailbox.wait(SENDER, 2, timeout=40)
    assert delay["Subject"].startswith("Delayed Mail")
    assert parts(delay) == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    per_rcpt = status_groups(delay)[1]
    assert per_rcpt["Action"] == "delayed"
    assert per_rcpt["Status"].startswith("4.")
    assert "Will-Retry-Until" in per_rcpt
    temporary, permanent = all_failures(delay)
    assert permanent == set()
    per_rcpt = status_groups(failure)[1]
    assert per_rcpt["Action"] == "failed"
    assert per_rcpt["Status"] == "4.4.7"
    assert per_rcpt["Diagnostic-Code"] == "smtp; 451 4.0.0 tern-sink injected fault"
    assert "expired" in failure.get_payload()[0].get_content()
    # One delay notice only, though the message went round retry2 more than once.
    assert len([e for e in t.events() if e.get("event") == "dsn_queued" and e.get("action") == "delayed"]) == 1


def test_notify_success_to_a_server_without_dsn_gives_a_relayed_notice(world):
    t = world.make("--hide", "DSN")
    send(t, ["bob@dest.test"], rcpt_options=["NOTIFY=SUCCESS"])
    [report] = world.mailbox.wait(SENDER)
    assert report["Subject"] == "Successful Mail Delivery Report"
    per_rcpt = status_groups(report)[1]
    assert per_rcpt["Action"] == "relayed"
    assert per_rcpt["Status"].startswith("2.")
    assert parts(report)[2] == "text/rfc822-headers"
    assert scan_message(report) == set()


def test_a_dsn_capable_next_hop_gets_the_request_unchanged_and_we_stay_silent(world, workdir):
    dest_box = os.path.join(workdir, "dest")
    t = world.make("--maildir", dest_box)
    send(t, ["bob@dest.test"], mail_options=["RET=HDRS", "ENVID=QQ+2B314"],
         rcpt_options=["NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;Bob.Original@dest.test"])
    [got] = Mailbox(dest_box).wait("bob@dest.test")
    assert "RET=HDRS ENVID=QQ+2B314" in got["X-Tern-Sink-Mail-Params"]
    assert got["X-Tern-Sink-Rcpt-Params"] == \
        "bob@dest.test NOTIFY=SUCCESS,DELAY ORCPT=rfc822;Bob.Original@dest.test"
    t.wait_event("finished", result="delivered")
    assert not [e for e in t.events() if e.get("event") == "dsn_queued"]


def test_notify_never_sends_nothing(world):
    t = world.make("--fault", "rcpt=550")
    send(t, ["bob@dest.test"], rcpt_options=["NOTIFY=NEVER"])
    t.wait_event("finished", result="failed")
    assert not [e for e in t.events() if e.get("event") == "dsn_queued"]
    assert world.mailbox.messages() == []


def test_a_failed_message_from_the_null_sender_goes_to_the_postmaster(world):
    t = world.make("--fault", "rcpt=550")
    send(t, ["bob@dest.test"], sender="")
    [bounce] = world.mailbox.wait(POSTMASTER)
    assert bounce["Subject"].startswith("Postmaster Notice")
    assert scan_message(bounce) == {b"bob@dest.test"}
    assert t.wait_event("dsn_queued", audience="double_bounce")["to"] == POSTMASTER


def test_double_bounces_can_be_dropped(world):
    t = world.make("--fault", "rcpt=550", dsn={"double_bounce": "drop"})
    send(t, ["bob@dest.test"], sender="")
    assert "double bounces are off" in t.wait_event("dsn_dropped")["reason"]
    t.wait_event("finished", result="failed")
    assert world.mailbox.messages() == []


def test_a_notice_that_fails_is_never_reported_to_its_null_sender(world):
    # The sender's own domain refuses: the failure report cannot be
    # delivered, so it goes to the postmaster (a different domain here).
    t = world.make("--fault", "rcpt=550")
    send(t, ["bob@dest.test"], sender="alice@dest.test")
    [bounce] = world.mailbox.wait(POSTMASTER)
    assert bounce["Subject"].startswith("Postmaster Notice")
    inner = [p for p in bounce.iter_parts() if p.get_content_type() == "message/rfc822"][0].get_payload()[0]
    assert inner["Subject"] == "Undelivered Mail Returned to Sender"
    assert inner["To"].addresses[0].addr_spec == "alice@dest.test"


def test_smtputf8_message_gets_a_global_report(world):
    t = world.make("--fault", "rcpt=550")
    body = "Subject: caf\u00e9\r\n\r\nol\u00e1\r\n".encode()
    send(t, ["j\u00f6rg@dest.test"], mail_options=["SMTPUTF8", "BODY=8BITMIME"], body=body)
    [report] = world.mailbox.wait(SENDER)
    assert parts(report) == ["text/plain", "message/global-delivery-status", "message/global"]
    # RFC 6533 address type utf-8, the address as UTF-8 (not xtext).
    assert "Final-Recipient: utf-8; j\u00f6rg@dest.test".encode() in world.mailbox.raw(SENDER)[0]


def test_an_8bit_message_comes_back_in_an_8bitmime_report(world):
    t = world.make("--fault", "rcpt=550")
    body = "Subject: menu\r\nContent-Type: text/plain; charset=utf-8\r\n\r\ncr\u00e8me br\u00fbl\u00e9e\r\n".encode()
    send(t, ["bob@dest.test"], mail_options=["BODY=8BITMIME"], body=body)
    [report] = world.mailbox.wait(SENDER)
    # Sent with BODY=8BITMIME (RFC 6152), since the returned part is 8-bit.
    assert "BODY=8BITMIME" in report["X-Tern-Sink-Mail-Params"]
    returned = report.get_payload()[2]
    assert returned["Content-Transfer-Encoding"] == "8bit"
    assert "cr\u00e8me br\u00fbl\u00e9e" in returned.get_payload()[0].get_content()
    assert scan_message(report) == {b"bob@dest.test"}


def test_ternctl_bounce_fails_recipients_with_a_notice_and_delete_is_silent(world):
    t = world.make(routing={"transport": [
        {"domain": "hold.test", "next_hop": "[127.0.0.9]:9"}]})
    t.ternctl("hold-domain", "hold.test")
    send(t, ["x@hold.test", "y@hold.test"])
    qid = t.wait_event("on_hold")["qid"]
    r = t.ternctl("bounce", qid, "x@hold.test")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 recipient failed" in r.stdout
    [report] = world.mailbox.wait(SENDER)
    per_rcpt = status_groups(report)[1]
    assert per_rcpt["Final-Recipient"] == "rfc822; x@hold.test"
    assert "deleted by the administrator" in per_rcpt["Diagnostic-Code"]
    assert [q["id"] for q in t.queue()] == [qid]
    r = t.ternctl("bounce", qid, "nobody@hold.test")
    assert r.returncode != 0 and "not a pending recipient" in r.stdout + r.stderr
    r = t.ternctl("delete", qid)
    assert r.returncode == 0, r.stdout + r.stderr
    wait_until(lambda: t.queue() == [], 10, what="an empty queue")
    assert len(world.mailbox.messages()) == 1
