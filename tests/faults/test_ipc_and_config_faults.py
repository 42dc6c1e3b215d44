"""Clients that connect and say nothing, and config files caught half-written by a reload,
never disturb the daemon or its workloads."""

from __future__ import annotations

import json
import socket

from tests.faults.probes import ipc
from tests.integration.harness import Daemon, pid_alive, wait_for


def _connect(daemon: Daemon) -> socket.socket:
    """A connection that will never send; blocking connect waits out a full listen backlog."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(daemon.socket_path))
    s.settimeout(10)
    return s


def _pings(daemon: Daemon) -> bool:
    try:
        return bool(ipc(daemon, "ping")["ok"])
    except OSError:
        return False


def test_silent_connections_do_not_disturb_the_running_workloads(daemon: Daemon) -> None:
    daemon.workload("svc", "sleep_forever")
    daemon.start()
    pid = daemon.wait_state("svc", "RUNNING")["pid"]
    silent = []
    try:
        for _ in range(100):  # more than the daemon's connection cap
            silent.append(_connect(daemon))
        assert daemon.proc is not None and daemon.proc.poll() is None
        assert pid_alive(pid)
    finally:
        for s in silent:
            s.close()
    # Once they hang up, everyone is served again (a connect may first meet a full backlog).
    wait_for(lambda: _pings(daemon), what="daemon answers after the silent clients")
    assert daemon.status("svc")["pid"] == pid


def test_silent_connections_held_open_do_not_lock_out_the_cli(daemon: Daemon) -> None:
    daemon.workload("svc", "sleep_forever")
    daemon.start()
    pid = daemon.wait_state("svc", "RUNNING")["pid"]
    silent = []
    try:
        for _ in range(100):
            silent.append(_connect(daemon))
        # Held open, never written to: an operator must still be able to use the CLI.
        result = daemon.ctl("status", "svc", "--json", check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(result.stdout)["pid"] == pid
    finally:
        for s in silent:
            s.close()


HALF_WRITTEN = {
    "mid_key": "name: half\ntype: serv",  # cut inside a value: an unknown type
    "mid_flow": '{"name": "half", "type": "service", "module": "tests.integr',  # open brace
    "mid_list": "name: half\ntype: service\nmodule: x\ntags: [a, b",  # open flow sequence
    "fields_missing": "name: half\n",  # valid YAML, but cut before required fields
    "empty": "",  # created, nothing written yet
}


def test_half_written_configs_reject_the_reload_and_disturb_nothing(daemon: Daemon) -> None:
    daemon.workload("keep", "sleep_forever")
    daemon.workload("edited", "sleep_forever")
    daemon.start()
    pids = {n: daemon.wait_state(n, "RUNNING")["pid"] for n in ("keep", "edited")}
    # A valid edit and a new file caught mid-write arrive in the same reload.
    daemon.workload("edited", "sleep_forever", tags=["new"])
    for case, text in HALF_WRITTEN.items():
        (daemon.config_dir / "half.yaml").write_text(text)
        result = daemon.ctl("reload", check=False)
        assert result.returncode != 0, (case, result.stdout)
        assert "half.yaml" in result.stderr, (case, result.stderr)
        views = ipc(daemon, "list")["result"]["workloads"]
        assert {w["name"]: w["pid"] for w in views} == pids, case
        assert {w["name"]: w["tags"] for w in views}["edited"] == [], case
        assert all(pid_alive(p) for p in pids.values()), case
    # The writer finishes the file: the next reload takes everything.
    daemon.workload("half", "sleep_forever")
    daemon.ctl("reload")
    daemon.wait_state("half", "RUNNING")
    assert daemon.status("keep")["pid"] == pids["keep"]
    wait_for(lambda: daemon.status("edited")["tags"] == ["new"], what="edit applied")
