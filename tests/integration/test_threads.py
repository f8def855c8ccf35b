"""Thread names: every thread ternd and tern-sink start says what it is in
/proc/PID/task/*/comm (what top -H, ps -L and perf show; docs/operations.md)."""
import os

from conftest import wait_until


def thread_names(pid):
    """{tid: name} of a running process."""
    names = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                names[int(tid)] = f.read().strip()
        except FileNotFoundError:  # the thread ended meanwhile
            pass
    return names


def test_ternd_names_its_threads(ternd_factory):
    # delivery.loops defaults to as many delivery loops as workers.
    t = ternd_factory({"server": {"workers": 3}, "delivery": {"enabled": True}})
    pid = t.proc.pid
    expected = {"tern-worker-0", "tern-worker-1", "tern-worker-2",
                "tern-deliver-0", "tern-deliver-1", "tern-deliver-2",
                "tern-dlv-io-0", "tern-dlv-io-1", "tern-dlv-io-2",
                "tern-spool", "tern-reclaim", "tern-log", "tern-control", "tern-storage", "tern-auth",
                "tern-pop3-io", "rocksdb:timer"}
    names = wait_until(lambda: (n := thread_names(pid)) and expected <= set(n.values()) and n, 10,
                       what="every named thread")
    assert "tern-worker-3" not in names.values(), names
    assert "tern-deliver-3" not in names.values(), names
    assert names[pid] == "ternd", names  # the main thread keeps the process's name (ps, pgrep)
    # RocksDB names its background threads itself ("rocksdb:low"); the one
    # it leaves unnamed, the timer of its periodic tasks, inherits the name
    # of the thread that opened the spool, which is named for it. Another
    # "ternd" would be a thread of ours nobody named.
    assert "rocksdb:timer" in names.values(), names
    unnamed = [tid for tid, name in names.items() if name == "ternd" and tid != pid]
    assert unnamed == [], names
    assert all(len(name) <= 15 for name in names.values()), names


def test_delivery_loops_are_as_many_as_configured(ternd_factory):
    t = ternd_factory({"server": {"workers": 3}, "delivery": {"enabled": True, "loops": 2}})
    expected = {"tern-deliver-0", "tern-deliver-1", "tern-dlv-io-0", "tern-dlv-io-1"}
    names = wait_until(lambda: (n := thread_names(t.proc.pid)) and expected <= set(n.values()) and n, 10,
                       what="two delivery loops")
    assert "tern-deliver-2" not in names.values(), names
    assert "tern-dlv-io-2" not in names.values(), names
    assert t.wait_event("delivery_started")["loops"] == "2"


def test_sink_names_its_threads(sink_factory, workdir):
    s = sink_factory("--maildir", os.path.join(workdir, "maildir"), threads=2)
    expected = {"sink-worker-0", "sink-worker-1", "sink-store"}
    names = wait_until(lambda: (n := thread_names(s.proc.pid)) and expected <= set(n.values()) and n, 10,
                       what="every named thread")
    assert [name for tid, name in names.items() if tid != s.proc.pid and name == "tern-sink"] == [], names
