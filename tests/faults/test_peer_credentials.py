"""Whoever reaches the socket is not automatically the operator (issue 8): once the socket mode
was loosened, any local user ran `stop` and `down`. Now each connection's SO_PEERCRED decides:
root, the daemon's uid and `daemon.socket_group` may run everything, `daemon.read_group` the
read-only commands, anyone else gets `permission_denied` ("permission denied", exit 1).

A real daemon as root, and the real `mastercontrol-ctl` run as `nobody` (setuid in the forked
child by subprocess), with the supplementary groups each case needs."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import REPO, Daemon

NOBODY = 65534
STAFF, USERS = 50, 100  # Debian's own groups: nobody is in neither

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run ctl as nobody")


def _interpreter() -> str:
    """A Python `nobody` may run that imports mastercontrol from the repo (the venv's may sit
    under a private /root)."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        try:
            probe = subprocess.run(
                [candidate, "-c", "import mastercontrol.ctl.main"],
                cwd=REPO,
                user=NOBODY,
                group=NOBODY,
                extra_groups=[],
                capture_output=True,
                timeout=60,
                check=False,
            )
        except OSError:  # not executable for nobody
            continue
        if probe.returncode == 0:
            return candidate
    pytest.skip("no Python interpreter that user nobody may run imports mastercontrol")


@pytest.fixture
def shared() -> Iterator[Daemon]:
    """A daemon under a directory other users may traverse (tmp_path's parents are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="mc-peer-", dir="/tmp"))
    root.chmod(0o755)
    d = Daemon(root)
    try:
        yield d
    finally:
        d.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def ctl_as(
    daemon: Daemon, python: str, *args: str, gid: int = NOBODY, groups: tuple[int, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-m", "mastercontrol.ctl.main", *daemon.path_args(), *args],
        cwd=REPO,
        user=NOBODY,
        group=gid,
        extra_groups=list(groups),
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# A stop request sent by hand (no mastercontrol import): prints the daemon's one reply line.
_RAW_STOP = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(30)
s.connect(sys.argv[1])
s.sendall(b'{"cmd": "stop", "args": {"name": "svc"}}\\n')
data = b""
while not data.endswith(b"\\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode())
"""


def _refused(out: subprocess.CompletedProcess[str]) -> None:
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    assert "permission denied" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_a_stranger_on_a_loosened_socket_is_refused_and_nothing_stops(shared: Daemon) -> None:
    python = _interpreter()
    shared.workload("svc", "sleep_forever")
    shared.start()
    pid = shared.wait_state("svc", "RUNNING")["pid"]
    shared.socket_path.chmod(0o666)  # what an operator "fixing" access might do
    shared.socket_path.parent.chmod(0o755)

    for command in (("stop", "svc"), ("down",), ("restart", "svc"), ("list",)):
        _refused(ctl_as(shared, python, *command))
    # On the wire, for API clients and scripts that speak IPC themselves: the stable code.
    raw = subprocess.run(
        [python, "-c", _RAW_STOP, str(shared.socket_path)],
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    reply = json.loads(raw.stdout)
    assert reply["ok"] is False and reply["error"]["code"] == "permission_denied", raw
    st = shared.status("svc")  # root still may, and nothing was touched
    assert (st["state"], st["pid"]) == ("RUNNING", pid)
    assert shared.proc is not None and shared.proc.poll() is None
    assert "permission denied: uid 65534" in shared.stderr()
    assert shared.stop() == 0


def test_read_group_may_look_socket_group_may_act(shared: Daemon) -> None:
    python = _interpreter()
    shared.write("daemon.yaml", "daemon:\n  socket_group: staff\n  read_group: users\n")
    shared.workload("svc", "sleep_forever")
    shared.start()
    pid = shared.wait_state("svc", "RUNNING")["pid"]
    assert stat.S_IMODE(shared.socket_path.stat().st_mode) == 0o666
    assert shared.socket_path.stat().st_gid == STAFF
    assert stat.S_IMODE(shared.socket_path.parent.stat().st_mode) == 0o751

    _refused(ctl_as(shared, python, "list"))  # in neither group
    assert ctl_as(shared, python, "list", groups=(USERS,)).returncode == 0
    status = ctl_as(shared, python, "status", "svc", groups=(USERS,))
    assert status.returncode == 0 and "RUNNING" in status.stdout, status
    for command in (("stop", "svc"), ("down",), ("reload",), ("signal", "svc", "HUP")):
        out = ctl_as(shared, python, *command, groups=(USERS,))
        _refused(out)
        assert "read-only" in out.stderr
    assert shared.status("svc")["pid"] == pid

    # socket_group: as a supplementary group, and as the primary one.
    assert ctl_as(shared, python, "stop", "svc", groups=(STAFF,)).returncode == 0
    assert shared.status("svc")["state"] == "STOPPED"
    assert ctl_as(shared, python, "start", "svc", gid=STAFF).returncode == 0
    shared.wait_state("svc", "RUNNING", "STARTING")
    assert shared.stop() == 0
