"""Helpers the benchmark scripts share: free loopback ports and waiting for
an SMTP server's banner."""
import socket
import time


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_banner(port, proc, timeout=15.0):
    """True once a server on 127.0.0.1:port greets with 220 within timeout
    seconds; False on timeout or when proc (if given) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), 1) as s:
                s.settimeout(2)
                if s.recv(3) == b"220":
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False
