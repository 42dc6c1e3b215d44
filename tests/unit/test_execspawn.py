"""The posix_spawn fast path of `command:` workloads: the guarantees of the fork bootstrap.

Real children (util-linux setpriv, a Python probe), real pipes; every child is killed and
reaped at teardown.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mastercontrol.child.execspawn import ExecChild, fast_path_applies, setpriv_path, spawn_child
from mastercontrol.child.spawn import ChildSpec, SpawnedChild
from mastercontrol.engine.exitstatus import CHILD_EXIT_EXEC_FAILED
from tests.unit.childhelpers import kill_group, read_output, wait_exit

pytestmark = pytest.mark.skipif(setpriv_path() is None, reason="util-linux setpriv not on PATH")

# What the child reports about itself: session, group, fds, signals, umask, cwd, environment.
PROBE = """
import json, os
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
print(json.dumps({
    "pid": os.getpid(), "sid": os.getsid(0), "pgid": os.getpgid(0),
    "fds": sorted(int(f) for f in os.listdir("/proc/self/fd")),
    "stdin": os.readlink("/proc/self/fd/0"),
    "sigblk": int(status["SigBlk"].strip(), 16),
    "umask": os.umask(0), "cwd": os.getcwd(), "env": dict(os.environ),
}))
"""
PROBE_ARGV = (sys.executable, "-I", "-S", "-c", PROBE)

Start = Callable[..., SpawnedChild | ExecChild]


@pytest.fixture
def start() -> Iterator[Start]:
    children: list[SpawnedChild | ExecChild] = []

    def _start(close_fds: tuple[int, ...] = (), **kwargs: Any) -> SpawnedChild | ExecChild:
        # The fast path keeps the master's niceness: ask for it, so that `nice make test`
        # takes the same path as a plain run.
        kwargs.setdefault("cpu_nice", os.getpriority(os.PRIO_PROCESS, 0))
        child = spawn_child(ChildSpec(name="t", **kwargs), close_fds)
        children.append(child)
        return child

    yield _start
    for child in children:
        kill_group(child.pid)
        try:
            wait_exit(child)
        finally:
            os.close(child.log_fd)


def probe(start: Start, **kwargs: Any) -> dict[str, Any]:
    child = start(command=PROBE_ARGV, **kwargs)
    assert isinstance(child, ExecChild)
    out = read_output(child.log_fd)
    assert wait_exit(child) == 0, out
    report: dict[str, Any] = json.loads(out)
    return report


def test_a_plain_command_takes_the_fast_path_with_the_bootstrap_guarantees(
    start: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")  # never handed down
    inherited_r, inherited_w = os.pipe()
    os.set_inheritable(inherited_w, True)  # an fd the master's parent left inheritable
    old_umask = os.umask(0o077)
    cwd = os.getcwd()
    try:
        report = probe(start, env={"MC_X": "1"}, working_dir=str(tmp_path))
        assert os.getcwd() == cwd and os.umask(0o077) == 0o077  # the master's, restored
    finally:
        os.umask(old_umask)
        os.close(inherited_r)
        os.close(inherited_w)
    assert report["sid"] == report["pgid"] == report["pid"]  # own session and group
    assert report["fds"][:3] == [0, 1, 2] and len(report["fds"]) == 4  # + the listing's own
    assert report["stdin"] == "/dev/null"
    assert report["sigblk"] == 0
    assert report["umask"] == 0o022
    assert report["cwd"] == str(tmp_path) == report["env"]["PWD"]
    assert report["env"]["MC_X"] == "1" and "NOTIFY_SOCKET" not in report["env"]


def test_signals_the_master_ignores_are_default_again(start: Start) -> None:
    # Python itself ignores SIGPIPE at start-up: the probe is the shell.
    old_handler = signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as the master does
    try:
        child = start(command=("sh", "-c", "grep SigIgn /proc/$$/status"))
    finally:
        signal.signal(signal.SIGPIPE, old_handler)
    assert isinstance(child, ExecChild)
    ignored = int(read_output(child.log_fd).split()[1], 16)
    assert wait_exit(child) == 0
    assert ignored & (1 << (signal.SIGPIPE - 1)) == 0


def test_clean_env_gives_the_minimal_environment(start: Start) -> None:
    report = probe(start, clean_env=True, env={"MC_Y": "2"})
    assert "PATH" in report["env"] and report["env"]["MC_Y"] == "2"
    assert "PYTEST_CURRENT_TEST" not in report["env"]


def test_exit_status_and_death_by_signal_are_read_by_pid(start: Start) -> None:
    child = start(command=("sh", "-c", "exit 7"))
    assert isinstance(child, ExecChild)
    assert wait_exit(child) == 7
    killed = start(command=("sleep", "30"))
    os.killpg(killed.pid, signal.SIGKILL)
    assert wait_exit(killed) == -signal.SIGKILL


def test_the_program_runs_with_pdeathsig_armed(start: Start) -> None:
    # setpriv arms PR_SET_PDEATHSIG and execs; a program can read it back with prctl.
    check = (
        "import ctypes; libc = ctypes.CDLL(None); v = ctypes.c_int();"
        "libc.prctl(2, ctypes.byref(v)); print(v.value)"
    )
    child = start(command=(sys.executable, "-I", "-S", "-c", check))
    assert isinstance(child, ExecChild)
    assert read_output(child.log_fd).strip() == str(int(signal.SIGKILL)).encode()
    assert wait_exit(child) == 0


def test_a_missing_program_goes_the_fork_way_with_its_reserved_exit_code(start: Start) -> None:
    child = start(command=("/nonexistent/program",))
    assert isinstance(child, SpawnedChild)
    out = read_output(child.log_fd).decode()
    assert wait_exit(child) == CHILD_EXIT_EXEC_FAILED
    assert "cannot execute '/nonexistent/program'" in out


def test_a_working_dir_that_cannot_be_entered_goes_the_fork_way(
    start: Start, tmp_path: Path
) -> None:
    child = start(command=("true",), working_dir=str(tmp_path / "missing"))
    assert isinstance(child, SpawnedChild)
    assert "working_dir" in read_output(child.log_fd).decode()
    assert wait_exit(child) == 120


@pytest.mark.parametrize(
    "fields",
    [
        {"module": "tests.unit.childhelpers"},
        {"memory_limit_mb": 64},
        {"max_processes": 50},
        {"cpu_nice": 19},
        {"user": "root"},
        {"group": "root"},
    ],
)
def test_what_posix_spawn_cannot_set_takes_the_fork_path(fields: dict[str, Any]) -> None:
    if "module" not in fields:
        fields = {"command": ("true",), **fields}
    if fields.get("cpu_nice") == os.getpriority(os.PRIO_PROCESS, 0):
        pytest.skip("the test runs at nice 19 already")
    assert not fast_path_applies(ChildSpec(name="t", **fields))


def test_the_master_niceness_itself_takes_the_fast_path() -> None:
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    assert fast_path_applies(ChildSpec(name="t", command=("true",), cpu_nice=nice))
