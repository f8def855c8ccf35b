"""Which TLS suites ternd accepts: Mozilla's "intermediate" profile by
default on every listener (25 and 587 STARTTLS, 465, POP3 STLS and 995),
tls.ciphers / tls.ciphersuites / tls.min_version for operators, bad values as
configuration errors, SIGHUP; and on the delivery side, `verify` held to the
same strong list while `may` and `encrypt` stay broad (RFC 7435).

Handshakes are made with `openssl s_client`, which offers exactly the suite
a test names."""
import re
import shutil
import signal
import ssl
import subprocess

import pytest
from aiosmtpd.controller import Controller

from conftest import check_config, delivering_ternd, error_lines, free_port, make_cert, send, wait_until

pytestmark = pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not installed")

# No forward secrecy (RSA key exchange), and forward secrecy with CBC-SHA1:
# both were accepted before the intermediate profile.
WEAK = ["AES128-SHA", "ECDHE-RSA-AES128-SHA"]
STRONG = ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-CHACHA20-POLY1305", "DHE-RSA-AES256-GCM-SHA384"]


def s_client(port, *args, starttls=None):
    """The suite `openssl s_client` agreed on with 127.0.0.1:port, or None
    when the handshake failed."""
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-brief", *args]
    if starttls:
        argv += ["-starttls", starttls]
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    m = re.search(r"^Ciphersuite: (\S+)$", r.stderr, re.M)
    if r.returncode == 0 and m:
        return m.group(1)
    assert r.returncode != 0 and not m, (r.returncode, r.stdout, r.stderr)
    return None


def tls12(port, cipher, starttls=None):
    return s_client(port, "-tls1_2", "-cipher", cipher, starttls=starttls)


def tls13(port, suite=None, starttls=None):
    return s_client(port, "-tls1_3", *(["-ciphersuites", suite] if suite else []), starttls=starttls)


@pytest.fixture
def every_listener(ternd_factory, cert_pair):
    """make(**tls) starts a ternd with each kind of TLS listener and these
    [tls] keys besides the certificate; t.listeners maps each kind to its
    (port, -starttls protocol or None for implicit TLS)."""
    def make(**tls):
        cert, key = cert_pair
        ports = {name: free_port() for name in ("submission", "submissions", "pop3", "pop3s")}
        t = ternd_factory({
            "tls": {"certificate": cert, "private_key": key, **tls},
            "smtp": {"submission": [f"127.0.0.1:{ports['submission']}"],
                     "submissions": [f"127.0.0.1:{ports['submissions']}"]},
            "pop3": {"listen": [f"127.0.0.1:{ports['pop3']}"], "listen_tls": [f"127.0.0.1:{ports['pop3s']}"]},
        })
        t.listeners = {"smtp": (t.port, "smtp"), "submission": (ports["submission"], "smtp"),
                       "submissions": (ports["submissions"], None), "pop3": (ports["pop3"], "pop3"),
                       "pop3s": (ports["pop3s"], None)}
        return t
    return make


@pytest.mark.parametrize("listener", ["smtp", "submission", "submissions", "pop3", "pop3s"])
def test_default_is_the_intermediate_profile_on_every_listener(every_listener, listener):
    t = every_listener()
    port, starttls = t.listeners[listener]
    for cipher in WEAK:
        assert tls12(port, cipher, starttls) is None, f"{listener} accepted {cipher}"
    for cipher in STRONG:
        assert tls12(port, cipher, starttls) == cipher, f"{listener} refused {cipher}"
    assert tls13(port, starttls=starttls) in ("TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256",
                                              "TLS_CHACHA20_POLY1305_SHA256")
    assert tls13(port, "TLS_CHACHA20_POLY1305_SHA256", starttls) == "TLS_CHACHA20_POLY1305_SHA256"


def test_operator_ciphers_are_honoured(every_listener):
    # A list of the operator's own, here one strong suite plus a legacy one.
    t = every_listener(ciphers="ECDHE-RSA-AES256-GCM-SHA384:AES128-SHA")
    for port, starttls in (t.listeners["smtp"], t.listeners["submissions"], t.listeners["pop3s"]):
        assert tls12(port, "ECDHE-RSA-AES256-GCM-SHA384", starttls) == "ECDHE-RSA-AES256-GCM-SHA384"
        assert tls12(port, "AES128-SHA", starttls) == "AES128-SHA"
        assert tls12(port, "ECDHE-RSA-AES128-GCM-SHA256", starttls) is None


def test_operator_ciphersuites_are_honoured(every_listener):
    t = every_listener(ciphersuites="TLS_CHACHA20_POLY1305_SHA256")
    port, starttls = t.listeners["smtp"]
    assert tls13(port, "TLS_CHACHA20_POLY1305_SHA256", starttls) == "TLS_CHACHA20_POLY1305_SHA256"
    assert tls13(port, "TLS_AES_128_GCM_SHA256", starttls) is None
    # "" turns TLS 1.3 off; TLS 1.2 goes on with tls.ciphers.
    t = every_listener(ciphersuites="")
    port, starttls = t.listeners["submissions"]
    assert tls13(port, starttls=starttls) is None
    assert tls12(port, "ECDHE-RSA-AES128-GCM-SHA256", starttls) == "ECDHE-RSA-AES128-GCM-SHA256"


def test_min_version_13_refuses_tls12_on_every_listener(every_listener):
    t = every_listener(min_version="TLSv1.3")
    for name, (port, starttls) in t.listeners.items():
        assert tls12(port, "ECDHE-RSA-AES128-GCM-SHA256", starttls) is None, name
        assert tls13(port, starttls=starttls), name


def test_sighup_applies_new_cipher_lists(every_listener):
    t = every_listener()
    port, starttls = t.listeners["submissions"]
    assert tls12(port, "ECDHE-RSA-AES128-GCM-SHA256", starttls) == "ECDHE-RSA-AES128-GCM-SHA256"
    t.overrides["tls"]["ciphers"] = "ECDHE-RSA-CHACHA20-POLY1305"
    t.write_config()
    t.signal(signal.SIGHUP)
    t.wait_event("reload", status="ok")
    wait_until(lambda: tls12(port, "ECDHE-RSA-AES128-GCM-SHA256", starttls) is None, 10,
               what="the new tls.ciphers in force")
    assert tls12(port, "ECDHE-RSA-CHACHA20-POLY1305", starttls) == "ECDHE-RSA-CHACHA20-POLY1305"

    # A list OpenSSL cannot use is refused by the reload; the old one stays.
    t.overrides["tls"]["ciphers"] = "NO-SUCH-CIPHER"
    t.write_config()
    t.signal(signal.SIGHUP)
    ev = t.wait_event("reload", status="error")
    assert "tls.ciphers" in ev["error"], ev
    assert t.running()
    assert tls12(port, "ECDHE-RSA-CHACHA20-POLY1305", starttls) == "ECDHE-RSA-CHACHA20-POLY1305"


@pytest.mark.parametrize("text,line,key,message", [
    ('[tls]\nmin_version = "TLSv1.2"\nciphers = "NO-SUCH-CIPHER"\n', 3, "tls.ciphers", "no cipher"),
    ('[tls]\nciphers = ""\n', 2, "tls.ciphers", "no cipher"),
    ('[tls]\n\nciphersuites = "TLS_NO_SUCH_SUITE"\n', 3, "tls.ciphersuites", "TLS 1.3 suites"),
    ('[tls]\nmin_version = "TLSv1.3"\nciphersuites = ""\n', 3, "tls.ciphersuites", '"TLSv1.3"'),
])
def test_unusable_cipher_lists_are_config_errors(workdir, text, line, key, message):
    r = check_config(workdir, text)
    assert r.returncode != 0, r
    lines = error_lines(r)
    assert len(lines) == 1, lines
    assert f"line {line}: {key}: " in lines[0] and message in lines[0], lines


# ---- delivery: a server that offers only a weak suite ----

class Recorder:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, session.ssl is not None))
        return "250 2.0.0 Ok"


@pytest.fixture
def weak_tls_server(workdir):
    """An SMTP server on 127.0.0.2 whose STARTTLS speaks TLS 1.2 with
    AES128-SHA only (no forward secrecy, CBC-SHA1), with a certificate for
    mx.weak.test."""
    cert, key = make_cert(workdir, cn="mx.weak.test")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("AES128-SHA")
    recorder = Recorder()
    controller = Controller(recorder, hostname="127.0.0.2", port=free_port(host="127.0.0.2"), tls_context=ctx)
    controller.start()
    controller.cert, controller.recorder = cert, recorder
    yield controller
    controller.stop()


def test_delivery_verify_needs_a_strong_suite_may_and_encrypt_do_not(ternd_factory, dns_factory, weak_tls_server):
    server = weak_tls_server
    # One name per policy: hops to the same host and port share connections
    # whatever their policies. Only verify checks the name.
    dns = dns_factory("--host-record=mx.weak.test,127.0.0.2", "--host-record=encrypt.weak.test,127.0.0.2",
                      "--host-record=may.weak.test,127.0.0.2")
    transport = [{"domain": "verify.test", "next_hop": f"mx.weak.test:{server.port}", "tls": "verify"},
                 {"domain": "encrypt.test", "next_hop": f"encrypt.weak.test:{server.port}", "tls": "encrypt"},
                 {"domain": "may.test", "next_hop": f"may.weak.test:{server.port}", "tls": "may"}]
    t = delivering_ternd(ternd_factory, dns, server.port, delivery={"ca_file": server.cert},
                         routing={"transport": transport})
    send(t, ["bob@encrypt.test"])
    send(t, ["bob@may.test"])
    send(t, ["bob@verify.test"])
    # Opportunistic TLS takes what the server has: any encryption beats none.
    assert t.wait_event("delivered", rcpt="bob@encrypt.test")["tls"] == "yes"
    assert t.wait_event("delivered", rcpt="bob@may.test")["tls"] == "yes"
    # verify: the certificate would pass, the suite does not.
    ev = t.wait_event("deferred", rcpt="bob@verify.test")
    assert ev["dsn"] == "4.7.5", ev
    assert all(e.get("rcpt") != "bob@verify.test" for e in t.events("delivered"))
    assert sorted(server.recorder.messages) == [(["bob@encrypt.test"], True), (["bob@may.test"], True)]
