"""Cheap probes of a real mastercontrold for the fault suite: raw IPC, the state db, processes.

The CLI costs half a second of interpreter start per call; a fault loop that restarts the
daemon 60 times needs to ask "are you up?" faster than that, so these talk to the socket
directly. Imports the stdlib, psutil and the integration harness only.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path
from typing import Any

import psutil

from tests.integration.harness import Daemon


def ipc(daemon: Daemon, cmd: str, args: dict[str, Any] | None = None, timeout: float = 10) -> Any:
    """One JSON-lines request on the daemon's socket; the decoded reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(daemon.socket_path))
        s.sendall(json.dumps({"cmd": cmd, "args": args or {}}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("daemon closed the connection without a reply")
            buf += chunk
    return json.loads(buf)


def answers(daemon: Daemon) -> bool:
    """True once the daemon replies to ping; raises if its process has exited."""
    assert daemon.proc is not None
    if daemon.proc.poll() is not None:
        raise AssertionError(f"daemon exited with {daemon.proc.returncode}:\n{daemon.stderr()}")
    try:
        reply = ipc(daemon, "ping", timeout=5)
    except (OSError, ValueError):
        return False
    return bool(reply.get("ok"))


def run_rows(db_path: Path) -> list[tuple[str, int, str | None]]:
    """(workload, run id, reason) of every run row, read-only."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT workload, id, reason FROM runs ORDER BY id").fetchall()
    finally:
        conn.close()
    return [(str(w), int(i), r) for w, i, r in rows]


def integrity(db_path: Path) -> list[str]:
    conn = sqlite3.connect(str(db_path), timeout=10)
    try:
        return [str(row[0]) for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


def workload_processes(daemon: Daemon) -> list[psutil.Process]:
    """Live forked children of any daemon of this test (they keep the master's command line),
    other than the current master itself, its keeper (mc-keeper) and its zygote (mc-zygote)."""
    master = daemon.proc.pid if daemon.proc is not None and daemon.proc.poll() is None else -1
    found = []
    for proc in psutil.process_iter(["cmdline", "status", "name"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            if proc.pid == master or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if proc.info["name"] in ("mc-keeper", "mc-zygote"):  # not workloads
                continue
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "mastercontrol.daemon.main" in cmd and str(daemon.root) in cmd:
            found.append(proc)
    return found


def live(pids: list[int]) -> list[int]:
    """The pids of `pids` that are running (zombies count as gone)."""
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive
