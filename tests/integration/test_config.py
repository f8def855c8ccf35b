"""Configuration: --check-config diagnostics, value syntax, embedded default."""
import os
import re
import socket
import subprocess

import pytest

from conftest import REPO, TERND, _require, check_config, error_lines, expect, wait_until


def test_valid_config(workdir):
    r = check_config(workdir, f"""
[server]
hostname = "mx.example.test"
workers = 2
drain_timeout = "30s"

[smtp]
listen = ["127.0.0.1:2599", "[::1]:2599"]
max_message_size = "50MB"
max_recipients = 100
max_command_line = 512
max_line_length = 1000
max_errors = 10
max_connections = 1000
max_connections_per_ip = 20
max_received_headers = 50
allow_bare_lf = false
command_timeout = "5m"
data_timeout = 180
write_timeout = "250ms"

[relay]
local_domains = ["example.test"]
relay_domains = ["relay.example.test"]
trusted_networks = ["127.0.0.0/8", "::1/128", "192.0.2.7"]

[queue]
directory = "{workdir}/spool"
min_free_space = 104857600
space_check_interval = "5s"
finished_retention = "5m"

[log]
format = "json"
target = "stderr"

[control]
socket = "{workdir}/ctl.sock"
""")
    assert r.returncode == 0, r.stderr


def test_empty_config_is_valid(workdir):
    r = check_config(workdir, "")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("text,line,key", [
    ('[smtp]\nmax_recipients = 10\nmax_errors = "many"\n', 3, "smtp.max_errors"),
    ('[server]\nhostname = "x"\n\n[smtp]\ncommand_timeout = "5 fortnights"\n', 5, "smtp.command_timeout"),
    ('[smtp]\nmax_message_size = "50XB"\n', 2, "smtp.max_message_size"),
    ('[smtp]\nmax_errors = -1\n', 2, "smtp.max_errors"),
    ('[smtp]\nallow_bare_lf = "yes"\n', 2, "smtp.allow_bare_lf"),
    ('[smtp]\nlisten = ["not-an-address"]\n', 2, "smtp.listen"),
    ('[relay]\ntrusted_networks = ["10.0.0.0/33"]\n', 2, "relay.trusted_networks"),
    ('[log]\nformat = "xml"\n', 2, "log.format"),
    ('[log]\ntarget = "printer"\n', 2, "log.target"),
    ('[tls]\nmin_version = "SSLv3"\n', 2, "tls.min_version"),
    ('[server]\nworkers = "two"\n', 2, "server.workers"),
    ('[queue]\nspace_check_interval = "soon"\n', 2, "queue.space_check_interval"),
])
def test_bad_value_names_line_and_key(workdir, text, line, key):
    r = check_config(workdir, text)
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = error_lines(r)
    assert any(f"line {line}" in l and key in l for l in lines), r.stderr


def test_unknown_key(workdir):
    r = check_config(workdir, '[smtp]\nmax_recipients = 10\nmax_recipient = 5\n')
    assert r.returncode == 1
    assert any("line 3" in l and "smtp.max_recipient" in l for l in error_lines(r)), r.stderr


def test_unknown_section(workdir):
    r = check_config(workdir, '[server]\nworkers = 1\n[smpt]\nlisten = ["127.0.0.1:25"]\n')
    assert r.returncode == 1
    assert any("smpt" in l for l in error_lines(r)), r.stderr


def test_all_errors_reported(workdir):
    r = check_config(workdir, '[smtp]\nmax_errors = "x"\nmax_recipients = "y"\n\n[log]\nformat = "xml"\n')
    assert r.returncode == 1
    lines = error_lines(r)
    for ln, key in ((2, "smtp.max_errors"), (3, "smtp.max_recipients"), (6, "log.format")):
        assert any(f"line {ln}" in l and key in l for l in lines), (ln, key, r.stderr)
    # one line per error
    assert len([l for l in lines if re.search(r"line \d+", l)]) == 3, r.stderr


def test_toml_syntax_error(workdir):
    r = check_config(workdir, '[smtp]\nmax_errors = = 3\n')
    assert r.returncode == 1
    assert "line 2" in r.stderr, r.stderr


def test_missing_file(workdir):
    _require(TERND)
    r = subprocess.run([TERND, "--check-config", os.path.join(workdir, "nope.toml")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert r.stderr.strip()


def test_start_with_bad_config_fails(workdir):
    _require(TERND)
    path = os.path.join(workdir, "bad.toml")
    with open(path, "w") as f:
        f.write('[smtp]\nmax_errors = "x"\n')
    r = subprocess.run([TERND, "--config", path], capture_output=True, text=True, timeout=30, cwd=workdir)
    assert r.returncode != 0
    assert "line 2" in r.stderr and "smtp.max_errors" in r.stderr, r.stderr


def test_json_log_format(ternd_factory):
    import json
    t = ternd_factory({"log": {"format": "json"}})
    with t.raw() as c:
        expect(c.ehlo(), 250)

    def started():
        evs = []
        for l in t.log().splitlines():
            try:
                evs.append(json.loads(l))
            except ValueError:
                continue
        return [e for e in evs if e.get("event") == "started"]
    ev = wait_until(started, what="json started event")[0]
    assert "time" in ev


def test_log_to_file(ternd_factory, workdir):
    path = os.path.join(workdir, "events.log")
    t = ternd_factory({"log": {"target": "file", "file": path}})
    with t.raw() as c:
        expect(c.ehlo(), 250)
    wait_until(lambda: os.path.exists(path) and "event=connect" in open(path).read(),
               what="connect event in log file")


def test_embedded_default_config(workdir):
    """No --config: 127.0.0.1:2525 and ./var/spool relative to the working directory."""
    _require(TERND)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 2525))
    except OSError:
        pytest.skip("port 2525 is in use on this host")
    finally:
        s.close()
    p = subprocess.Popen([TERND], cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def banner():
            try:
                with socket.create_connection(("127.0.0.1", 2525), timeout=2) as c:
                    c.settimeout(3)
                    return c.recv(512)
            except OSError:
                assert p.poll() is None, p.stderr.read().decode()
                return None
        b = wait_until(banner, what="default listener on 2525")
        assert b.startswith(b"220 "), b
        assert os.path.isdir(os.path.join(workdir, "var", "spool"))
    finally:
        p.terminate()
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
    assert p.returncode == 0


def test_check_config_ok_message(workdir):
    r = check_config(workdir, '[smtp]\nmax_errors = 5\n')
    assert r.returncode == 0
    assert r.stdout.strip().endswith(": ok") or (r.stdout + r.stderr).strip().endswith(": ok"), (r.stdout, r.stderr)


@pytest.mark.parametrize("text,line,key", [
    ('hostname = "x"\n[server]\nworkers = 1\n', 1, "hostname"),                 # top-level key
    ('[smtp]\nmax_errors = 2.5\n', 2, "smtp.max_errors"),                        # float for integer
    ('[smtp]\ncommand_timeout = "1.5s"\n', 2, "smtp.command_timeout"),           # fraction
    ('[smtp]\ncommand_timeout = "3651d"\n', 2, "smtp.command_timeout"),          # too long
    ('[smtp]\ncommand_timeout = "30 s"\n', 2, "smtp.command_timeout"),           # space
    ('[smtp]\nmax_recipients = 4294967296\n', 2, "smtp.max_recipients"),        # > 32 bits
    ('[smtp]\nmax_errors = "20"\n', 2, "smtp.max_errors"),                       # string for integer
    ('[smtp]\nmax_message_size = "1.5M"\n', 2, "smtp.max_message_size"),
    ('[relay]\ntrusted_networks = [\n  "10.0.0.0/8",\n  "bogus",\n]\n', 4, "relay.trusted_networks"),
    ('[server]\nhostname = "bad..name"\n', 2, "server.hostname"),
    ('[tls]\n\ncertificate = "/tmp/x.crt"\n', 3, "tls"),                        # certificate without key
])
def test_more_bad_values(workdir, text, line, key):
    r = check_config(workdir, text)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert any(f"line {line}" in l and key in l for l in error_lines(r)), r.stderr


def test_duplicate_key_is_syntax_error_reported_alone(workdir):
    r = check_config(workdir, '[smtp]\nmax_errors = "x"\nmax_recipients = 5\nmax_recipients = 6\n')
    assert r.returncode == 1
    lines = [l for l in error_lines(r) if re.search(r"line \d+", l)]
    assert len(lines) == 1 and "line 4" in lines[0], r.stderr


def test_errors_in_line_order(workdir):
    r = check_config(workdir, '[log]\nformat = "xml"\n[smtp]\nmax_errors = "x"\n[server]\nworkers = "y"\n')
    assert r.returncode == 1
    nums = [int(m.group(1)) for l in error_lines(r) for m in [re.search(r"line (\d+)", l)] if m]
    assert nums == [2, 4, 6], r.stderr


@pytest.mark.parametrize("value,expected", [("64K", 65536), ("1MB", 1048576), ("2MiB", 2097152), (12345, 12345)])
def test_size_units(ternd_factory, value, expected):
    t = ternd_factory({"smtp": {"max_message_size": value}})
    with t.raw() as c:
        r = expect(c.ehlo(), 250)
        size = [l for l in r.lines if l.upper().startswith("SIZE")][0]
        assert int(size.split()[1]) == expected, (value, size)


@pytest.mark.parametrize("value", [1, "1s", "1000ms"])
def test_duration_units(ternd_factory, value):
    import time
    t = ternd_factory({"smtp": {"command_timeout": value}})
    with t.raw() as c:
        expect(c.ehlo(), 250)
        start = time.monotonic()
        expect(c.reply(timeout=10), 421, "4.4.2")
        assert 0.5 <= time.monotonic() - start <= 6


def test_the_reference_shows_the_embedded_default_configuration():
    """docs/configuration.md quotes the default file whole: it must not drift."""
    _require(TERND)
    embedded = subprocess.run([TERND, "--print-default-config"], capture_output=True, text=True, timeout=30).stdout
    with open(os.path.join(REPO, "docs", "configuration.md")) as f:
        doc = f.read()
    section = doc[doc.index("## The default configuration"):]
    start = section.index("\n", section.index("```")) + 1
    assert section[start:section.index("```", start)] == embedded
