"""Children hold none of the master's fds, so a SIGKILLed master's socket, db and pipes die
with it and a new daemon binds its socket on the first try, even while a grandchild lingers."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

from tests.faults.probes import answers, ipc, workload_processes
from tests.integration.harness import Daemon, pid_alive, wait_for


def _fds(pid: int) -> dict[int, str]:
    """fd number -> what it points to (`socket:[123]`, `pipe:[456]`, a path)."""
    base = Path(f"/proc/{pid}/fd")
    out = {}
    for entry in base.iterdir():
        try:
            out[int(entry.name)] = os.readlink(entry)
        except FileNotFoundError:  # closed while we looked
            continue
    return out


def test_children_hold_only_stdio_and_a_restarted_daemon_binds_at_once(
    daemon: Daemon, tmp_path: Path
) -> None:
    gpid_file = tmp_path / "grandchild.pid"
    daemon.workload("parent", "with_grandchild", params={"pidfile": str(gpid_file)})
    for i in range(3):
        daemon.workload(f"svc{i}", "chatter", params={"lines": 5, "size": 10})
    daemon.start()
    names = ["parent", "svc0", "svc1", "svc2"]
    pids = {n: daemon.wait_state(n, "RUNNING")["pid"] for n in names}
    grandchild = int(wait_for(lambda: gpid_file.exists() and gpid_file.read_text()))

    # Stalled IPC clients make the master hold extra sockets while it forks a new child.
    idle = [_stalled_client(daemon) for _ in range(3)]
    os.kill(pids["svc0"], signal.SIGKILL)
    pids["svc0"] = wait_for(
        lambda: (st := daemon.status("svc0"))["pid"] not in (None, pids["svc0"]) and st["pid"],
        what="svc0 restarted",
    )

    master = _fds(daemon.pid)
    master_sockets = {t for t in master.values() if t.startswith("socket:")}
    assert master_sockets, master  # the listener and the idle clients at least
    for name, pid in [*pids.items(), ("grandchild", grandchild)]:
        fds = _fds(pid)
        assert sorted(fds) == [0, 1, 2], (name, fds)
        assert fds[0] == "/dev/null", (name, fds)
        assert fds[1] == fds[2] and fds[1].startswith("pipe:"), (name, fds)
        # The only thing a child shares with the master is its own output pipe.
        shared = set(fds.values()) & set(master.values())
        assert shared <= {fds[1], "/dev/null"}, (name, shared)
    for s in idle:
        s.close()

    daemon.kill9()
    wait_for(
        lambda: not any(pid_alive(pids[n]) for n in names), what="children gone with the master"
    )
    # The grandchild may still be alive here (the next daemon's boot kills its group); it
    # must not be what keeps the old socket or lock busy.
    daemon.start(wait=False)
    wait_for(lambda: answers(daemon), what="restarted daemon answers")
    assert "address already in use" not in daemon.stderr().lower()
    assert "already running" not in daemon.stderr().lower()
    assert ipc(daemon, "ping")["result"]["pid"] == daemon.pid
    wait_for(lambda: not pid_alive(grandchild), what="grandchild killed by the new daemon")
    for name in names:
        daemon.wait_state(name, "RUNNING")
    assert len(workload_processes(daemon)) == len(names)


def _stalled_client(daemon: Daemon) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(daemon.socket_path))
    s.sendall(b'{"cmd": "ping", "ar')  # half a request: the master keeps the connection
    return s
