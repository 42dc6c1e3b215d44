"""Monitoring a real daemon: metrics, the RSS cap, health checks and systemd notifications."""

from __future__ import annotations

import json
import os
import signal
import socket

from tests.integration.harness import Daemon, wait_for
from tests.notify_listener import NotifyListener


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def received(listener: NotifyListener, line: str, start: int) -> list[str]:
    """Datagrams from index `start` on that carry `line` (collecting what has arrived)."""
    listener.collect(0.1)
    return [m for m in listener.messages[start:] if line in m.split("\n")]


def fast_sampling(daemon: Daemon) -> None:
    daemon.write("daemon.yaml", "daemon:\n  sample_interval: 0.2\n")


def test_status_and_list_show_process_and_system_metrics(daemon: Daemon) -> None:
    fast_sampling(daemon)
    daemon.workload("svc", "grow", params={"megabytes": 30})
    daemon.start()
    st = wait_for(lambda: (s := daemon.status("svc"))["metrics"] and s, what="metrics")
    assert st["metrics"]["rss_bytes"] > 30 * 2**20
    assert st["metrics"]["threads"] >= 1 and st["metrics"]["fds"] >= 3
    listing = json.loads(daemon.ctl("list", "--json").stdout)
    system = listing["daemon"]["system"]
    assert system["memory"]["total"] > 0 and len(system["load"]) == 3
    assert any(p.startswith(str(daemon.root)) for p in system["disks"])
    top = daemon.ctl("top", "--iterations", "1").stdout
    assert "RSS MiB" in top and "svc" in top


def test_workload_over_max_rss_is_restarted_with_reason_rss_limit(daemon: Daemon) -> None:
    fast_sampling(daemon)
    daemon.workload("fat", "grow", params={"megabytes": 80}, max_rss_mb=40, restart_delay=0)
    daemon.workload("slim", "grow", params={"megabytes": 10}, max_rss_mb=40)
    daemon.start()
    st = wait_for(
        lambda: (
            (s := daemon.status("fat"))["last_exit"]
            and s["last_exit"]["reason"] == "rss_limit"
            and s
        ),
        what="fat restarted for its RSS",
    )
    assert st["restarts"] >= 1
    slim = daemon.wait_state("slim", "RUNNING")
    assert slim["restarts"] == 0 and slim["last_exit"] is None


def test_failing_health_check_restarts_the_service_and_healthy_one_is_left_alone(
    daemon: Daemon,
) -> None:
    good_port, bad_port = free_port(), free_port()
    daemon.workload(
        "good",
        "listen_forever",
        params={"port": good_port},
        health_check={"tcp": good_port, "interval": 0.2, "timeout": 1, "failures": 2},
    )
    daemon.workload(
        "bad",
        "sleep_forever",
        restart_delay=0,
        health_check={"tcp": bad_port, "interval": 0.2, "timeout": 1, "failures": 2},
    )
    daemon.start()
    st = wait_for(
        lambda: (
            (s := daemon.status("bad"))["last_exit"]
            and s["last_exit"]["reason"] == "unhealthy"
            and s
        ),
        what="bad restarted as unhealthy",
    )
    assert st["restarts"] >= 1
    good = wait_for(
        lambda: (s := daemon.status("good"))["health"] and s["health"]["status"] == "healthy" and s,
        what="good healthy",
    )
    assert good["restarts"] == 0 and good["last_exit"] is None


def test_daemon_speaks_sd_notify_and_children_do_not_inherit_it(daemon: Daemon) -> None:
    daemon.workload(
        "env",
        "print_env",
        type="script",
        max_runs=1,
        params={"keys": "NOTIFY_SOCKET,WATCHDOG_USEC"},
    )
    daemon.workload("svc", "sleep_forever")
    with NotifyListener() as listener:
        env = {**listener.environ(), "WATCHDOG_USEC": "400000"}
        daemon.start(env=env)
        ready = listener.wait_for("READY=1")
        assert "workloads" in ready.get("STATUS", "")
        listener.wait_for("WATCHDOG=1")  # from the loop, every WATCHDOG_USEC/2
        daemon.wait_state("env", "COMPLETED")
        logs = daemon.ctl("logs", "env").stdout
        assert "NOTIFY_SOCKET=None" in logs and "WATCHDOG_USEC=None" in logs
        before = len(listener.messages)
        daemon.ctl("reload")
        reloading = wait_for(lambda: received(listener, "RELOADING=1", before), what="RELOADING")
        assert "MONOTONIC_USEC=" in reloading[0]
        after = listener.messages.index(reloading[0]) + 1
        wait_for(lambda: received(listener, "READY=1", after), what="READY=1 after the reload")
        os.kill(daemon.pid, signal.SIGTERM)
        listener.wait_for("STOPPING=1")
        assert daemon.proc is not None and daemon.proc.wait(20) == 0
