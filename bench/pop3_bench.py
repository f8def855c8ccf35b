#!/usr/bin/python3
"""Local delivery and POP3 throughput of one ternd, on loopback.

1. Maildir delivery rate: tern-bench sends MESSAGES messages of 1 KiB to
   USERS local users over CONNECTIONS connections; the rate is messages
   written into Maildirs per second, from the first accepted message to the
   last file in new/ (the delivery engine writes each one: tmp, fsync,
   rename, fsync of new/).
2. POP3: CLIENTS threads each run sessions (login, STAT, RETR of every
   message, QUIT without deleting) against their own mailbox for SECONDS;
   reported as sessions/s and RETR/s (1 KiB messages). Logins check a
   yescrypt hash (crypt(3)), deliberately slow: a session's cost is mostly
   that. 3. Logins alone (USER, PASS, QUIT) for SECONDS/2.

Usage: bench/pop3_bench.py BUILD_DIR [--messages N] [--users N] [--seconds S]
Bounded in count and time; traffic stays on 127.0.0.1.
"""
import argparse
import os
import poplib
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loopback import free_port, wait_banner  # noqa: E402

PASSWORD = "bench password"


def run_clients(target, n):
    """Runs target(0) .. target(n-1) on threads; the seconds until all ended."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - started


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    ternd, ternctl = f"{build}/mta/ternd", f"{build}/tools/ternctl"
    bench = f"{build}/tools/tern_bench/tern-bench"
    work = tempfile.mkdtemp(prefix="tern-pop3-bench-", dir="/var/tmp")
    try:
        users = os.path.join(work, "users")
        with open(os.path.join(work, "users.toml"), "w") as f:
            f.write(f'[auth]\nusers_file = "{users}"\n')
        for i in range(args.users):
            subprocess.run([ternctl, "--config", os.path.join(work, "users.toml"), "user", "add", f"u{i}",
                            f"u{i}@local.test"], input=PASSWORD + "\n", text=True, check=True,
                           capture_output=True)
        smtp, pop = free_port(), free_port()
        maildirs = os.path.join(work, "mail")
        cfg = os.path.join(work, "ternd.toml")
        with open(cfg, "w") as f:
            f.write(f'''[server]
hostname = "bench.test.invalid"
[smtp]
listen = ["127.0.0.1:{smtp}"]
[relay]
local_domains = ["local.test"]
[auth]
users_file = "{users}"
[local]
maildir_root = "{maildirs}"
[pop3]
listen = ["127.0.0.1:{pop}"]
allow_plaintext = true
failure_delay = 0
max_sessions_per_user = 100
[queue]
directory = "{work}/spool"
[dns]
servers = ["127.0.0.1:9"]
[control]
socket = "{work}/ctl.sock"
''')
        log = open(os.path.join(work, "ternd.log"), "wb")
        proc = subprocess.Popen([ternd, "--config", cfg], stdout=log, stderr=log)
        try:
            if not wait_banner(smtp, proc):
                sys.exit("ternd did not start")
            # One tern-bench per user, all at once: "u3+{n}@local.test" reaches
            # user u3 through plus-addressing.
            per_user = args.messages // args.users
            per_conn = max(1, args.connections // args.users)
            started = time.monotonic()
            runs = [subprocess.Popen([bench, "--target", f"127.0.0.1:{smtp}", "--messages", str(per_user),
                                      "--connections", str(per_conn), "--size", "1024",
                                      "--to", f"u{i}+{{n}}@local.test", "--quiet"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                    for i in range(args.users)]
            for run in runs:
                _, err = run.communicate(timeout=600)
                if run.returncode != 0:
                    sys.exit(f"tern-bench failed: {err.decode(errors='replace')}")
            args.messages = per_user * args.users

            def delivered():
                n = 0
                for i in range(args.users):
                    d = os.path.join(maildirs, f"u{i}", "new")
                    n += len(os.listdir(d)) if os.path.isdir(d) else 0
                return n
            deadline = time.monotonic() + 600
            while delivered() < args.messages and time.monotonic() < deadline:
                time.sleep(0.05)
            elapsed = time.monotonic() - started
            n = delivered()
            print(f"maildir delivery: {n} messages of 1 KiB in {elapsed:.2f} s = {n / elapsed:,.0f} msg/s "
                  f"(from the first SMTP connection to the last file in new/)")

            sessions, retrs, errors = [0], [0], []
            lock = threading.Lock()
            stop_at = time.monotonic() + args.seconds

            def client(i):
                while time.monotonic() < stop_at:
                    try:
                        p = poplib.POP3("127.0.0.1", pop, timeout=30)
                        p.user(f"u{i % args.users}")
                        p.pass_(PASSWORD)
                        count, _ = p.stat()
                        for k in range(1, count + 1):
                            p.retr(k)
                        p.quit()
                    except Exception as e:  # noqa: BLE001 - counted and reported
                        errors.append(repr(e))
                        return
                    with lock:
                        sessions[0] += 1
                        retrs[0] += count
            took = run_clients(client, args.users)
            print(f"pop3: {args.users} clients, {sessions[0]} sessions in {took:.2f} s = "
                  f"{sessions[0] / took:,.1f} sessions/s, {retrs[0]} RETR = {retrs[0] / took:,.0f} RETR/s"
                  + (f", {len(errors)} errors: {errors[:3]}" if errors else ""))

            # Logins alone (USER, PASS, QUIT): what a session costs without mail.
            logins = [0]
            stop_login = time.monotonic() + args.seconds / 2

            def login_only(i):
                while time.monotonic() < stop_login:
                    p = poplib.POP3("127.0.0.1", pop, timeout=30)
                    p.user(f"u{i % args.users}")
                    p.pass_(PASSWORD)
                    p.quit()
                    with lock:
                        logins[0] += 1
            took = run_clients(login_only, args.users)
            print(f"pop3 logins (yescrypt): {logins[0]} in {took:.2f} s = {logins[0] / took:,.1f} sessions/s")
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
