#!/usr/bin/python3
"""An SMTP server with AUTH PLAIN and LOGIN for one user, for the delivery
client's integration tests (test_smtp_client.cpp); tern-sink has no AUTH.

Every AUTH attempt and every accepted message is appended to --log as one
JSON line, so a test can see what the client sent. --dsn advertises DSN and
accepts its parameters (aiosmtpd knows neither). Prints
"listening on 127.0.0.1:PORT" when ready; SIGTERM stops it.
"""
import argparse
import json
import signal
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

DSN_PARAMETERS = ("RET", "ENVID", "NOTIFY", "ORCPT")


class Log:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def write(self, record):
        with self.lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


class Handler:
    def __init__(self, log, dsn):
        self.log = log
        self.dsn = dsn

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.dsn:
            responses.insert(len(responses) - 1, "250-DSN")
        return responses

    async def handle_DATA(self, server, session, envelope):
        self.log.write({
            "event": "message",
            "authenticated": bool(session.authenticated),
            "mail_from": envelope.mail_from,
            "mail_options": envelope.mail_options,
            "rcpt_tos": envelope.rcpt_tos,
            "rcpt_options": envelope.rcpt_options,
            "content": envelope.original_content.decode("utf-8", "surrogateescape"),
        })
        return "250 2.0.0 Ok: queued"


class DsnSMTP(SMTP):
    """Takes RET, ENVID, NOTIFY and ORCPT as known parameters."""

    def _getparams(self, params):
        result = super()._getparams(params)
        if result is not None:
            for name in DSN_PARAMETERS:
                result.pop(name, None)
        return result


class DsnController(Controller):
    def factory(self):
        return DsnSMTP(self.handler, **self.SMTP_kwargs)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--mechanisms", default="PLAIN,LOGIN", help="AUTH mechanisms to offer")
    parser.add_argument("--dsn", action="store_true")
    args = parser.parse_args()

    log = Log(args.log)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == args.user and \
            auth_data.password.decode() == args.password
        log.write({"event": "auth", "mechanism": mechanism, "ok": ok})
        return AuthResult(success=ok, handled=False)

    offered = set(args.mechanisms.split(","))
    excluded = [m for m in ("PLAIN", "LOGIN") if m not in offered]
    controller_type = DsnController if args.dsn else Controller
    controller = controller_type(Handler(log, args.dsn), hostname="127.0.0.1", port=args.port,
                                 authenticator=authenticator, auth_require_tls=False,
                                 auth_exclude_mechanism=excluded, enable_SMTPUTF8=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    controller.start()
    print(f"listening on 127.0.0.1:{args.port}", flush=True)
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
