"""spawn(): real forked children, their bootstrap, exit codes and isolation from the master."""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mastercontrol.child.spawn import CTX, ChildSpec, SpawnedChild, spawn
from mastercontrol.config.model import RunMode, WorkloadConfig, WorkloadType
from mastercontrol.engine.exitstatus import (
    CHILD_EXIT_EXEC_FAILED,
    CHILD_EXIT_IMPORT_FAILED,
    CHILD_EXIT_SETUP_FAILED,
)
from tests.unit.childhelpers import DEADLINE, is_gone, kill_group, read_output, wait_exit

HELPERS = "tests.unit.childhelpers"
Spawner = Callable[..., SpawnedChild]


@pytest.fixture
def start() -> Iterator[Spawner]:
    """spawn() a helper workload; every child's group is killed and reaped at teardown."""
    children: list[SpawnedChild] = []

    def _start(entry_point: str = "return_value", **kwargs: Any) -> SpawnedChild:
        kwargs.setdefault("module", HELPERS)
        close_fds = kwargs.pop("close_fds", ())
        child = spawn(ChildSpec(name="t", entry_point=entry_point, **kwargs), close_fds)
        children.append(child)
        return child

    yield _start
    for child in children:
        kill_group(child.pid)
        child.process.kill()  # in case it never became a group leader
        wait_exit(child.process)
        os.close(child.log_fd)


def run(start: Spawner, entry_point: str = "return_value", **kwargs: Any) -> tuple[int, str]:
    child = start(entry_point, **kwargs)
    output = read_output(child.log_fd)
    return wait_exit(child.process), output.decode()


@pytest.mark.parametrize(
    ("entry_point", "params", "code"),
    [
        ("return_value", {}, 0),
        ("return_value", {"value": 5}, 5),
        ("return_value", {"value": True}, 0),  # bool is not an exit code
        ("return_value", {"value": "done"}, 0),  # neither is any other object
        ("exit_with", {"code": 7}, 7),
        ("exit_with", {"code": None}, 0),
        ("raise_error", {}, 1),
    ],
)
def test_exit_code_follows_the_entry_point(
    start: Spawner, entry_point: str, params: dict[str, Any], code: int
) -> None:
    assert run(start, entry_point, params=params)[0] == code


def test_uncaught_exception_traceback_goes_to_the_log(start: Spawner) -> None:
    code, output = run(start, "raise_error", params={"message": "kaputt"})
    assert code == 1
    assert "Traceback (most recent call last)" in output
    assert "RuntimeError: kaputt" in output


def test_sys_exit_with_a_message_prints_it_and_exits_1(start: Spawner) -> None:
    assert run(start, "exit_with", params={"code": "bad config"}) == (1, "bad config\n")


def test_out_of_range_return_code_exits_1_not_truncated(start: Spawner) -> None:
    code, output = run(start, "return_value", params={"value": 256})
    assert code == 1
    assert "256 is not an exit code" in output


def test_uncaught_keyboard_interrupt_dies_by_sigint(start: Spawner) -> None:
    assert run(start, "keyboard_interrupt")[0] == -signal.SIGINT


def test_stdout_and_stderr_both_reach_the_pipe(start: Spawner) -> None:
    assert run(start, "say", params={"text": "out", "err": "err"}) == (0, "out\nerr\n")


def test_print_reaches_the_log_before_the_child_exits(start: Spawner) -> None:
    child = start("sleep", params={"seconds": 60})
    assert read_output(child.log_fd, until=b"sleeping\n") == b"sleeping\n"
    assert child.process.exitcode is None


@pytest.mark.parametrize(
    ("module", "entry_point", "message"),
    [
        ("tests.unit.no_such_module", "run", "cannot import module 'tests.unit.no_such_module'"),
        (HELPERS, "missing", f"entry point {HELPERS}:missing not found"),
        (HELPERS, "NOT_CALLABLE", f"entry point {HELPERS}:NOT_CALLABLE is not callable"),
    ],
)
def test_import_failure_exits_with_reserved_code(
    start: Spawner, module: str, entry_point: str, message: str
) -> None:
    code, output = run(start, entry_point, module=module)
    assert code == CHILD_EXIT_IMPORT_FAILED
    assert message in output


def test_bad_working_dir_is_a_setup_failure(start: Spawner, tmp_path: Path) -> None:
    code, output = run(start, working_dir=str(tmp_path / "missing"))
    assert code == CHILD_EXIT_SETUP_FAILED
    assert "setup failed: working_dir" in output


def test_child_leads_its_own_session_and_process_group(start: Spawner, tmp_path: Path) -> None:
    path = str(tmp_path / "info.json")
    code, _ = run(start, "report", params={"path": path})
    info = json.loads(Path(path).read_text())
    assert code == 0
    assert info["pgid"] == info["pid"]
    assert info["sid"] == info["pid"]
    assert info["stdin"] == "/dev/null"
    assert info["blocked"] == []  # spawn() blocks signals across fork; the child unblocks


def test_child_does_not_keep_the_master_wakeup_fd(start: Spawner, tmp_path: Path) -> None:
    # Its fd number is closed in the child and may be reused by the workload's own files: a
    # signal handled in Python would write a byte into whatever file now has that number.
    path = str(tmp_path / "info.json")
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    old_wakeup = signal.set_wakeup_fd(wake_w)
    try:
        assert run(start, "report", params={"path": path})[0] == 0
    finally:
        signal.set_wakeup_fd(old_wakeup)
        os.close(wake_r)
        os.close(wake_w)
    assert json.loads(Path(path).read_text())["wakeup_fd"] == -1


def test_child_keeps_only_stdin_stdout_stderr(start: Spawner, tmp_path: Path) -> None:
    with open(tmp_path / "master.db", "w") as f, socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        os.set_inheritable(f.fileno(), True)  # even an inheritable fd must not leak
        child = start("sleep", params={"seconds": 60}, close_fds=(sock.fileno(),))
        read_output(child.log_fd, until=b"sleeping\n")
        fds = sorted(int(fd) for fd in os.listdir(f"/proc/{child.pid}/fd"))
        pipe = os.readlink(f"/proc/{child.pid}/fd/1")
        assert fds == [0, 1, 2]
        assert pipe == os.readlink(f"/proc/self/fd/{child.log_fd}")
        assert os.readlink(f"/proc/{child.pid}/fd/2") == pipe


def test_cpu_nice_is_absolute(start: Spawner, tmp_path: Path) -> None:
    path = str(tmp_path / "info.json")
    for nice in (7, -3):  # negative works here: the suite runs as root
        assert run(start, "report", params={"path": path}, cpu_nice=nice)[0] == 0
        assert json.loads(Path(path).read_text())["nice"] == nice


def test_env_and_working_dir_applied_and_systemd_vars_removed(
    start: Spawner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv("KEEP_ME", "inherited")
    path = str(tmp_path / "info.json")
    workdir = tmp_path / "work"
    workdir.mkdir()
    code, _ = run(
        start,
        "report",
        params={"path": path},
        env={"MY_SETTING": "42"},
        working_dir=str(workdir),
    )
    info = json.loads(Path(path).read_text())
    assert code == 0
    assert info["env"]["MY_SETTING"] == "42"
    assert info["env"]["KEEP_ME"] == "inherited"
    assert "NOTIFY_SOCKET" not in info["env"]
    assert "WATCHDOG_USEC" not in info["env"]
    assert info["cwd"] == str(workdir)
    assert info["sys_path0"] == str(workdir)


def test_module_in_working_dir_is_importable(start: Spawner, tmp_path: Path) -> None:
    (tmp_path / "my_agent.py").write_text("def run(n):\n    print('agent', n)\n    return n\n")
    assert run(start, "run", module="my_agent", params={"n": 4}, working_dir=str(tmp_path)) == (
        4,
        "agent 4\n",
    )


def test_command_is_executed_with_output_in_the_pipe(start: Spawner, tmp_path: Path) -> None:
    script = "echo out; echo err >&2; echo $MY_VAR; pwd; exit 4"
    code, output = run(
        start,
        module=None,
        command=("sh", "-c", script),
        env={"MY_VAR": "from-env"},
        working_dir=str(tmp_path),
    )
    assert code == 4
    assert output == f"out\nerr\nfrom-env\n{tmp_path}\n"


def test_command_that_cannot_be_executed_exits_127(start: Spawner) -> None:
    code, output = run(start, module=None, command=("/nonexistent/program", "--flag"))
    assert code == CHILD_EXIT_EXEC_FAILED
    assert "cannot execute '/nonexistent/program'" in output


def test_grandchildren_share_the_child_process_group(start: Spawner) -> None:
    child = start("start_grandchild", params={"seconds": 60})
    line = read_output(child.log_fd, until=b"\n")
    grandchild = int(line.split()[1])
    assert os.getpgid(grandchild) == child.pid
    os.killpg(child.pid, signal.SIGTERM)  # what the master does to stop a workload
    assert wait_exit(child.process) == -signal.SIGTERM
    deadline = time.monotonic() + DEADLINE
    while not is_gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert is_gone(grandchild)


def test_signal_sent_to_child_does_not_wake_the_master(start: Spawner) -> None:
    """The child resets the wakeup fd and handlers it inherited (STYLE.md fact 2)."""
    got: list[int] = []
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    old_handler = signal.signal(signal.SIGUSR1, lambda signum, frame: got.append(signum))
    old_wakeup = signal.set_wakeup_fd(wake_w)
    try:
        child = start("sleep", params={"seconds": 60})
        read_output(child.log_fd, until=b"sleeping\n")
        os.kill(child.pid, signal.SIGUSR1)
        assert wait_exit(child.process) == -signal.SIGUSR1  # SIG_DFL terminates
        # A workload with its own handler must not write into the master's wakeup fd either.
        child = start("wait_for_usr1")
        read_output(child.log_fd, until=b"waiting\n")
        os.kill(child.pid, signal.SIGUSR1)
        assert wait_exit(child.process) == 0
        with pytest.raises(BlockingIOError):
            os.read(wake_r, 100)
        assert got == []
    finally:
        signal.set_wakeup_fd(old_wakeup)
        signal.signal(signal.SIGUSR1, old_handler)
        os.close(wake_r)
        os.close(wake_w)


def _intermediate_master(report_fd: int) -> None:
    child = spawn(ChildSpec(name="orphan", module=HELPERS, entry_point="sleep"))
    # Once it has printed, the child only sleeps: it cannot die of a broken log pipe instead.
    read_output(child.log_fd, until=b"sleeping\n")
    os.write(report_fd, f"{child.pid}\n".encode())
    time.sleep(60)


def test_child_dies_when_its_master_is_killed() -> None:
    read_fd, write_fd = os.pipe()
    master = CTX.Process(target=_intermediate_master, args=(write_fd,))
    master.start()
    os.close(write_fd)
    child_pid = 0
    try:
        child_pid = int(read_output(read_fd, until=b"\n"))
        assert not is_gone(child_pid)
        os.kill(master.pid or 0, signal.SIGKILL)
        assert wait_exit(master) == -signal.SIGKILL
        deadline = time.monotonic() + DEADLINE
        while not is_gone(child_pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert is_gone(child_pid)
    finally:
        master.kill()
        wait_exit(master)
        if child_pid:
            kill_group(child_pid)
        os.close(read_fd)


def test_spec_from_config_takes_what_the_bootstrap_needs() -> None:
    cfg = WorkloadConfig(
        name="collector",
        type=WorkloadType.AGENT,
        run_mode=RunMode.FOREVER,
        module="examples.agents.hello",
        entry_point="main",
        params={"n": 1},
        env={"A": "1"},
        working_dir="/srv",
        memory_limit_mb=64,
        cpu_nice=5,
        stop_signal="INT",
    )
    spec = ChildSpec.from_config(cfg)
    assert spec == ChildSpec(
        name="collector",
        module="examples.agents.hello",
        entry_point="main",
        params={"n": 1},
        env={"A": "1"},
        working_dir="/srv",
        memory_limit_mb=64,
        cpu_nice=5,
        stop_signal=signal.SIGINT,
    )


def test_spec_needs_exactly_one_of_module_and_command() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ChildSpec(name="x")
    with pytest.raises(ValueError, match="exactly one"):
        ChildSpec(name="x", module="m", command=("true",))


def test_child_inherits_the_master_objects_frozen_and_the_master_does_not(
    start: Spawner,
) -> None:
    code, output = run(start, "gc_report")
    assert code == 0
    frozen = int(output.strip().rsplit("=", 1)[1])
    # Thousands of the master's objects sit in the child's permanent generation, so the
    # child's collections never copy the pages it shares with the master...
    assert frozen > 1000
    # ...while the master unfroze right after the fork: its own garbage is still collected.
    assert gc.get_freeze_count() == 0
