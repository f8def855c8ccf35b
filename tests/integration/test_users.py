"""ternctl user add|passwd|del|list: the user directory file, without ternd."""
import os
import stat
import subprocess

import pytest

from conftest import TERNCTL, _require


class Users:
    def __init__(self, workdir):
        self.path = os.path.join(workdir, "users")
        self.config = os.path.join(workdir, "tern.toml")
        with open(self.config, "w") as f:
            f.write(f'[auth]\nusers_file = "{self.path}"\n')

    def run(self, *args, password=None):
        _require(TERNCTL)
        return subprocess.run([TERNCTL, "--config", self.config, "user", *args],
                              input=password if password is not None else "",
                              capture_output=True, text=True, timeout=60)

    def entries(self):
        with open(self.path) as f:
            return {line.split()[1]: line.split() for line in f if line.startswith("user ")}


@pytest.fixture
def users(workdir):
    return Users(workdir)


def test_add_list_and_hash(users):
    r = users.run("add", "alice", "alice@example.org", "Alice.Smith@example.org", password="s3cret pass\n")
    assert r.returncode == 0, r.stderr
    assert "SIGHUP" in r.stdout
    entry = users.entries()["alice"]
    assert entry[2].startswith("$y$")
    assert entry[3:] == ["alice@example.org", "Alice.Smith@example.org"]
    assert "s3cret" not in open(users.path).read()

    r = users.run("add", "bob", password="other\n")
    assert r.returncode == 0, r.stderr
    r = users.run("list")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "alice active alice@example.org Alice.Smith@example.org",
        "bob active",
    ]


def test_file_mode_is_0600(users):
    r = users.run("add", "alice", password="pw\n")
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(users.path).st_mode) == 0o600
    os.chmod(users.path, 0o644)
    r = users.run("passwd", "alice", password="pw2\n")
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(users.path).st_mode) == 0o600
    # No temporary files left behind.
    assert sorted(os.listdir(os.path.dirname(users.path))) == ["tern.toml", "users"]


def test_passwd_changes_the_hash(users):
    assert users.run("add", "alice", "a@x.test", password="first\n").returncode == 0
    before = users.entries()["alice"]
    r = users.run("passwd", "alice", password="second\n")
    assert r.returncode == 0, r.stderr
    assert "SIGHUP" in r.stdout
    after = users.entries()["alice"]
    assert after[2].startswith("$y$") and after[2] != before[2]
    assert after[3:] == before[3:]
    r = users.run("passwd", "nobody", password="x\n")
    assert r.returncode == 1
    assert "nobody" in r.stderr


def test_del_removes_the_user_and_keeps_comments(users):
    with open(users.path, "w") as f:
        f.write("# managed by hand and by ternctl\n")
    assert users.run("add", "alice", password="pw\n").returncode == 0
    assert users.run("add", "bob", password="pw\n").returncode == 0
    r = users.run("del", "alice")
    assert r.returncode == 0, r.stderr
    assert "SIGHUP" in r.stdout
    assert list(users.entries()) == ["bob"]
    assert open(users.path).read().startswith("# managed by hand and by ternctl\n")
    assert users.run("list").stdout == "bob active\n"
    r = users.run("del", "alice")
    assert r.returncode == 1 and r.stderr.count("\n") == 1


def test_duplicate_add_fails(users):
    assert users.run("add", "alice", password="pw\n").returncode == 0
    before = open(users.path).read()
    r = users.run("add", "alice", password="pw\n")
    assert r.returncode == 1
    assert "exists" in r.stderr and r.stderr.count("\n") == 1
    assert open(users.path).read() == before


@pytest.mark.parametrize("name", ["Alice", "al ice", "a/b", "x" * 65, "ü"])
def test_bad_name_fails(users, name):
    r = users.run("add", name, password="pw\n")
    assert r.returncode == 1, r.stdout
    assert "invalid user name" in r.stderr
    assert not os.path.exists(users.path)


def test_bad_input_fails(users):
    assert users.run("add", "alice", "not-an-address", password="pw\n").returncode == 1
    assert users.run("add", "alice", password="").returncode == 1      # no password
    assert users.run("add", "alice", password="\n").returncode == 1    # empty password
    assert users.run("add", "alice", password="x" * 256 + "\n").returncode == 1
    assert not os.path.exists(users.path)


def test_usage_errors(users):
    assert users.run().returncode == 2
    assert users.run("frobnicate").returncode == 2
    assert users.run("add").returncode == 2
    assert users.run("passwd").returncode == 2
    assert users.run("list", "extra").returncode == 2


def test_missing_file_lists_nothing(users):
    r = users.run("list")
    assert r.returncode == 0 and r.stdout == ""


def test_broken_file_names_the_line(users):
    with open(users.path, "w") as f:
        f.write("# ok\nuser alice\n")
    r = users.run("list")
    assert r.returncode == 1
    assert "line 2" in r.stderr
