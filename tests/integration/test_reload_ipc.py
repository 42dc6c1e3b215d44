"""Reload applies only the difference; bad IPC clients never disturb the daemon; logs stay
bounded; cron ticks fire; one-shot runs and validation work without a daemon."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

from tests.integration.harness import REPO, Daemon, pid_alive, wait_for


def test_reload_applies_only_the_difference(daemon: Daemon) -> None:
    daemon.workload("keep", "sleep_forever")
    daemon.workload("change", "sleep_forever")
    daemon.workload("drop", "sleep_forever")
    daemon.start()
    pids = {n: daemon.wait_state(n, "RUNNING")["pid"] for n in ("keep", "change", "drop")}

    daemon.workload("change", "sleep_forever", tags=["edited"])
    daemon.remove("drop")
    daemon.workload("new", "sleep_forever")
    dry = daemon.ctl("reload", "--dry-run").stdout
    assert "would start new" in dry and "would stop drop" in dry and "would restart change" in dry
    assert daemon.status("keep")["pid"] == pids["keep"]  # a dry run touches nothing

    out = daemon.ctl("reload").stdout
    assert "1 unchanged" in out
    daemon.wait_state("new", "RUNNING")
    changed = wait_for(
        lambda: (
            (st := daemon.status("change"))["state"] == "RUNNING"
            and st["pid"] != pids["change"]
            and st
        )
    )
    assert changed["tags"] == ["edited"]
    assert daemon.status("keep")["pid"] == pids["keep"]
    wait_for(lambda: "drop" not in daemon.workloads(), what="drop removed")
    wait_for(lambda: not pid_alive(pids["drop"]), what="removed workload's process gone")


def test_invalid_config_rejects_the_whole_reload(daemon: Daemon) -> None:
    daemon.workload("keep", "sleep_forever")
    daemon.start()
    pid = daemon.wait_state("keep", "RUNNING")["pid"]
    daemon.workload("other", "sleep_forever")
    daemon.write("broken.yaml", "name: broken\ntype: service\nmodule: x\nbogus_field: 1\n")
    result = daemon.ctl("reload", check=False)
    assert result.returncode == 1
    assert "broken.yaml:4: bogus_field" in result.stderr
    assert set(daemon.workloads()) == {"keep"}  # "other" was not added either
    assert daemon.status("keep")["pid"] == pid

    # SIGHUP with the same bad config: rejected, logged, nothing changes.
    os.kill(daemon.pid, signal.SIGHUP)
    daemon_log = daemon.log_dir / "mastercontrold.log"
    wait_for(lambda: "reload rejected" in daemon_log.read_text(), what="rejection logged")
    assert set(daemon.workloads()) == {"keep"}
    (daemon.config_dir / "broken.yaml").unlink()
    os.kill(daemon.pid, signal.SIGHUP)
    daemon.wait_state("other", "RUNNING")
    assert daemon.status("keep")["pid"] == pid


def _raw(daemon: Daemon) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(daemon.socket_path))
    return s


def _reply(s: socket.socket) -> dict[str, object]:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        assert chunk, "daemon closed the connection"
        buf += chunk
    result: dict[str, object] = json.loads(buf)
    return result


def test_garbage_and_stalled_ipc_clients_do_not_disturb_the_daemon(daemon: Daemon) -> None:
    daemon.workload("svc", "sleep_forever")
    daemon.start()
    pid = daemon.wait_state("svc", "RUNNING")["pid"]
    assert oct(daemon.socket_path.stat().st_mode & 0o777) == "0o600"

    stalled = _raw(daemon)
    stalled.sendall(b'{"cmd": "list", "ar')  # half a request, then silence

    garbage = _raw(daemon)
    cases = [
        (b"not json at all\n", "bad_json"),
        (b"[1, 2, 3]\n", "bad_request"),
        (b'{"args": {}}\n', "bad_request"),
        (b'{"cmd": "rm -rf /"}\n', "unknown_command"),
        (b'{"cmd": "status", "args": {"name": 42}}\n', "bad_request"),
        (b'{"cmd": "status", "args": {"name": "nope"}}\n', "unknown_workload"),
        (b'{"cmd": "logs", "args": {"name": "svc", "lines": -5}}\n', "bad_request"),
        (b"\xff\xfe\x00garbage\n", "bad_json"),
    ]
    for line, code in cases:
        garbage.sendall(line)
        reply = _reply(garbage)
        assert reply["ok"] is False
        assert isinstance(reply["error"], dict) and reply["error"]["code"] == code, (line, reply)

    huge = _raw(daemon)
    try:
        huge.sendall(b"x" * (5 * 1024 * 1024))
        reply = _reply(huge)
        assert reply["error"]["code"] == "too_large"  # type: ignore[index]
    except (BrokenPipeError, ConnectionResetError):
        pass  # the daemon may close the connection before we finish writing

    # The daemon still answers everyone else, and the workload was never touched.
    assert daemon.status("svc")["pid"] == pid
    stalled.sendall(b'gs": {}}\n')
    assert _reply(stalled)["ok"] is True
    for s in (stalled, garbage, huge):
        s.close()


def test_logs_are_rotated_so_disk_use_stays_bounded(daemon: Daemon) -> None:
    daemon.workload(
        "spew", "spew_no_newline", log_max_bytes=256 * 1024, log_backups=2, params={"total_mb": 4}
    )
    daemon.workload(
        "chat",
        "chatter",
        params={"lines": 20000, "size": 60},
        log_max_bytes=128 * 1024,
        log_backups=1,
    )
    daemon.start()

    def files(name: str) -> list[Path]:
        return sorted(daemon.log_dir.glob(f"{name}.log*"))

    def total(name: str) -> int:
        return sum(p.stat().st_size for p in files(name))

    wait_for(lambda: len(files("spew")) == 3, what="spew log rotated twice")
    wait_for(lambda: len(files("chat")) == 2, what="chat log rotated")
    time.sleep(1.0)
    assert len(files("spew")) == 3 and total("spew") <= 3 * (256 * 1024 + 65536 + 64)
    assert len(files("chat")) == 2 and total("chat") <= 2 * (128 * 1024 + 200)
    tail = daemon.ctl("logs", "chat", "-n", "3").stdout.splitlines()
    assert len(tail) == 3 and tail[-1].endswith("x" * 60)


def test_a_cron_tick_runs_the_agent_and_it_waits_for_the_next(
    daemon: Daemon, tmp_path: Path
) -> None:
    marker = tmp_path / "ticks.txt"
    daemon.workload(
        "agent", "count_run", type="agent", schedule="* * * * * */2", params={"marker": str(marker)}
    )
    daemon.start()
    st = daemon.wait_state("agent", "SCHEDULED")
    assert st["next_run_at"] is not None
    wait_for(
        lambda: marker.exists() and len(marker.read_text().split()) >= 2,
        timeout=30,
        what="two cron ticks",
    )
    st = daemon.wait_state("agent", "SCHEDULED", "RUNNING")
    assert st["runs"] >= 2


def test_run_executes_once_in_the_foreground_with_the_workload_exit_code(
    daemon: Daemon,
) -> None:
    daemon.workload("three", "exit_with", type="script", max_runs=1, params={"code": 3})
    result = daemon.ctl("run", "three", check=False)
    assert result.returncode == 3
    assert "exiting with 3" in result.stdout
    assert daemon.ctl("run", "missing", check=False).returncode == 4


def test_validate_checks_the_examples_and_reports_problems(daemon: Daemon) -> None:
    ok = daemon.ctl("--config-dir", str(REPO / "examples" / "configs"), "validate", check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    daemon.write("bad.yaml", "name: bad\ntype: agent\nmodule: x\nschedule: 'not a cron'\n")
    bad = daemon.ctl("validate", check=False)
    assert bad.returncode == 1
    assert bad.stdout.startswith(f"{daemon.config_dir / 'bad.yaml'}:4: schedule") or (
        "bad.yaml:4: schedule" in bad.stdout
    )


def test_commands_without_a_daemon_exit_7(daemon: Daemon) -> None:
    for args in (("list",), ("status", "x"), ("start", "x"), ("reload",), ("down",)):
        assert daemon.ctl(*args, check=False).returncode == 7, args
    assert daemon.ctl("bogus-command", check=False).returncode == 2


def test_validate_also_checks_the_inventory(daemon: Daemon) -> None:
    daemon.workload("svc", "sleep_forever")
    daemon.write("inventory.yaml", "clients:\n  - name: pi1\n    hots: 10.0.0.1\n")
    result = daemon.ctl("validate", check=False)
    assert result.returncode == 1
    assert "inventory.yaml:3: clients[0].hots: unknown field" in result.stdout, result.stdout
