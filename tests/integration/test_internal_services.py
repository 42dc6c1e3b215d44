"""Internal services with a real mastercontrold: fleet.enabled in daemon.yaml gives `@client-api`
and `@heartbeat`, supervised like services (listed as internal, restarted after kill -9,
restarted by a reload that changes their section, removed when fleet is disabled) and stopped
after every user workload on `down`."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import sqlite3
import urllib.request
from pathlib import Path

import pytest

from tests.integration.harness import Daemon, pid_alive, wait_for

INTERNAL = ("@client-api", "@heartbeat")
# The services that can run here: @client-api needs helper "api"'s module on this branch.
RUNNABLE = tuple(
    n
    for n, module in (
        ("@client-api", "mastercontrol.api.client_service"),
        ("@heartbeat", "mastercontrol.fleet.heartbeat_service"),
    )
    if importlib.util.find_spec(module) is not None
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fleet_yaml(daemon: Daemon, api_port: int, central_port: int, **extra: object) -> Path:
    token = daemon.root / "token"
    token.write_text("integration-test-token\n")
    token.chmod(0o600)
    fleet: dict[str, object] = {
        "enabled": True,
        "client_name": "pi-test",
        "api_port": api_port,
        "central_api_url": f"http://127.0.0.1:{central_port}",  # nothing listens: retries
        "api_token_file": str(token),
        "heartbeat_interval_seconds": 5,
    }
    fleet.update(extra)
    return daemon.write("daemon.yaml", json.dumps({"fleet": fleet}))


def running_pid(daemon: Daemon, name: str) -> int:
    pid: int = daemon.wait_state(name, "RUNNING", timeout=40)["pid"]
    return pid


def health(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=5) as r:
            status: int = r.status
            return status
    except OSError:
        return 0


def test_fleet_gives_two_internal_services_marked_internal(daemon: Daemon) -> None:
    daemon.workload("svc", "sleep_forever")
    fleet_yaml(daemon, free_port(), free_port())
    daemon.start()
    views = daemon.workloads()
    assert sorted(views) == ["@client-api", "@heartbeat", "svc"]
    assert views["@client-api"]["internal"] is True and views["svc"]["internal"] is False
    for name in INTERNAL:
        st = daemon.status(name)
        assert st["internal"] is True
        assert "integration-test-token" not in json.dumps(st)
    heartbeat = running_pid(daemon, "@heartbeat")
    os.kill(heartbeat, signal.SIGKILL)
    wait_for(
        lambda: daemon.status("@heartbeat")["pid"] not in (None, heartbeat),
        timeout=40,
        what="@heartbeat restarted after kill -9",
    )


def test_the_client_api_answers_and_comes_back_after_kill_9(daemon: Daemon) -> None:
    pytest.importorskip("mastercontrol.api.client_service")
    port = free_port()
    fleet_yaml(daemon, port, free_port())
    daemon.start()
    pid = running_pid(daemon, "@client-api")
    wait_for(lambda: health(port) == 200, timeout=40, what="@client-api health 200")
    os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: daemon.status("@client-api")["pid"] not in (None, pid),
        timeout=40,
        what="@client-api restarted",
    )
    wait_for(lambda: health(port) == 200, timeout=40, what="health 200 again")
    assert not pid_alive(pid)


def test_reload_restarts_them_only_when_their_section_changes(daemon: Daemon) -> None:
    api_port, central_port = free_port(), free_port()
    fleet_yaml(daemon, api_port, central_port)
    daemon.start()
    pids = {n: running_pid(daemon, n) for n in RUNNABLE}
    daemon.workload("other", "sleep_forever")  # a user change alone
    out = daemon.ctl("reload").stdout
    assert "@heartbeat" not in out and "@client-api" not in out, out
    assert {n: daemon.status(n)["pid"] for n in RUNNABLE} == pids

    fleet_yaml(daemon, api_port, central_port, heartbeat_interval_seconds=7)
    out = daemon.ctl("reload").stdout
    assert "restart  @client-api" in out and "restart  @heartbeat" in out, out
    for name in RUNNABLE:

        def restarted(n: str = name) -> bool:
            st = daemon.status(n)
            return st["pid"] not in (None, pids[n]) and st["state"] == "RUNNING"

        wait_for(restarted, timeout=40, what=f"{name} restarted by the reload")

    daemon.write("daemon.yaml", "fleet: {enabled: false}\n")
    daemon.ctl("reload")
    wait_for(
        lambda: not set(INTERNAL) & set(daemon.workloads()),
        timeout=40,
        what="internal services removed",
    )


def test_down_stops_user_workloads_before_the_internal_services(daemon: Daemon) -> None:
    pidfile = daemon.root / "slow.pid"
    # Ignores SIGTERM: it stops only at its SIGKILL, stop_timeout (1.5 s) after down began.
    daemon.workload("slow", "ignore_sigterm", params={"pidfile": str(pidfile)}, stop_timeout=1.5)
    fleet_yaml(daemon, free_port(), free_port())
    daemon.start()
    for name in (*RUNNABLE, "slow"):
        running_pid(daemon, name)
    wait_for(pidfile.exists, what="slow wrote its pid")
    daemon.ctl("down")
    assert daemon.proc is not None and daemon.proc.wait(60) == 0
    conn = sqlite3.connect(f"file:{daemon.db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT workload, new_state, at FROM events WHERE new_state IN ('STOPPING', 'STOPPED')"
            " ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    order = [(w, s) for w, s, _ in rows]
    slow_stopped = len(order) - 1 - order[::-1].index(("slow", "STOPPED"))  # its last: at down
    for name in RUNNABLE:
        assert order.index((name, "STOPPING")) > slow_stopped, order
