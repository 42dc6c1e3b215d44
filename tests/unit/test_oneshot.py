"""run_foreground(): one real run in the foreground, with exit codes the way a shell gives them."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import pytest

from mastercontrol.child.oneshot import EXIT_INTERRUPTED, EXIT_TIMEOUT, run_foreground
from mastercontrol.child.spawn import CTX, ChildSpec
from mastercontrol.engine.exitstatus import CHILD_EXIT_MEMORY
from tests.unit.childhelpers import DEADLINE, is_gone, read_output, wait_exit

HELPERS = "tests.unit.childhelpers"


def spec(entry_point: str, **kwargs: Any) -> ChildSpec:
    if "command" not in kwargs:
        kwargs["module"] = HELPERS
    return ChildSpec(name="once", entry_point=entry_point, **kwargs)


def test_workload_exit_code_is_returned() -> None:
    assert run_foreground(spec("exit_with", params={"code": 3}), None, 5.0) == 3


def test_output_goes_to_the_callers_stdout_and_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    assert run_foreground(spec("say", params={"text": "to out", "err": "to err"}), None, 5) == 0
    out, err = capfd.readouterr()
    assert out == "to out\n"
    assert err == "to err\n"


def test_killed_by_a_signal_returns_128_plus_the_signal() -> None:
    command = ("sh", "-c", "kill -KILL $$")
    assert run_foreground(spec("", command=command), None, 5.0) == 128 + signal.SIGKILL


def test_memory_limit_applies(capfd: pytest.CaptureFixture[str]) -> None:
    workload = spec("allocate", params={"mb": 600}, memory_limit_mb=200)
    assert run_foreground(workload, None, 5.0) == CHILD_EXIT_MEMORY
    assert "MemoryError" in capfd.readouterr().err


def test_timeout_stops_the_workload(capfd: pytest.CaptureFixture[str]) -> None:
    assert run_foreground(spec("sleep", params={"seconds": 60}), 0.5, 10.0) == EXIT_TIMEOUT
    assert "once timed out after 0.5 s" in capfd.readouterr().err


def test_timeout_kills_a_group_that_ignores_sigterm(tmp_path: Any) -> None:
    pidfile = tmp_path / "pid"
    # `trap '' TERM` makes sh and its `sleep` grandchild ignore SIGTERM: only SIGKILL works.
    command = ("sh", "-c", f"trap '' TERM; sleep 60 & echo $! > {pidfile}; wait; wait")
    assert run_foreground(spec("", command=command), 1.0, 0.5) == EXIT_TIMEOUT
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + DEADLINE
    while not is_gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert is_gone(grandchild)


def _ctl(out_fd: int) -> None:
    """A `mastercontrol-ctl run` process whose terminal is a pipe the test reads."""
    os.dup2(out_fd, 1)
    sys.exit(run_foreground(spec("sleep", params={"seconds": 60}), None, 10.0))


def test_ctrl_c_is_forwarded_and_returns_130() -> None:
    read_fd, write_fd = os.pipe()
    ctl = CTX.Process(target=_ctl, args=(write_fd,))
    ctl.start()
    os.close(write_fd)
    try:
        assert read_output(read_fd, until=b"sleeping\n") == b"sleeping\n"
        os.kill(ctl.pid or 0, signal.SIGINT)  # what the terminal does on Ctrl-C
        assert wait_exit(ctl) == EXIT_INTERRUPTED
        assert read_output(read_fd) == b""  # EOF: the workload is gone too
    finally:
        ctl.kill()
        wait_exit(ctl)
        os.close(read_fd)


def test_signal_handlers_are_restored_afterwards() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGCHLD)
    run_foreground(spec("return_value"), None, 5.0)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGCHLD)) == before
    assert signal.set_wakeup_fd(-1) == -1
