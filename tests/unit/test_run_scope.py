"""cgroup v2 discovery (pure parsing); killing by cgroup and by run marker, real processes."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

from mastercontrol.child import cgroup
from mastercontrol.child.execspawn import ExecChild
from mastercontrol.child.group import (
    MARKER,
    kill_cgroup,
    kill_marked,
    start_ticks,
    sweep_interrupted,
)
from mastercontrol.child.scope import RunScopes
from mastercontrol.child.spawn import ChildSpec
from tests.integration.harness import pid_alive, wait_for

UNIFIED = (
    "25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw\n"
    "31 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec - cgroup2 cgroup2 rw,nsdelegate\n"
)
HYBRID = (
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
)
V1_ONLY = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
# A setsid'd grandchild, as in the issue: out of the shell's process group and session.
FAMILY = "sleep 2001 & echo $!; setsid sh -c 'sleep 2003 & echo $!; exit 0' & wait"


def test_the_cgroup2_mount_is_found_unified_and_hybrid() -> None:
    assert cgroup.cgroup2_mount(UNIFIED) == Path("/sys/fs/cgroup")
    assert cgroup.cgroup2_mount(HYBRID) == Path("/sys/fs/cgroup/unified")
    assert cgroup.cgroup2_mount(V1_ONLY) is None
    assert cgroup.cgroup2_mount(r"9 1 0:5 / /mnt/cg\040v2 rw - cgroup2 none rw") == Path(
        "/mnt/cg v2"
    )


def test_the_own_cgroup_is_the_v2_line() -> None:
    text = "4:memory:/process_api/abc\n0::/system.slice/mastercontrold.service\n"
    assert cgroup.own_cgroup(text) == "/system.slice/mastercontrold.service"
    assert cgroup.own_cgroup("0::/\n") == "/"
    assert cgroup.own_cgroup("4:memory:/x\n") is None


def test_forcing_the_fallback_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCTL_NO_CGROUP", "1")
    assert cgroup.usable_base() == (None, "MCTL_NO_CGROUP=1")


def _family(
    env: dict[str, str] | None = None, cgroup_dir: Path | None = None
) -> tuple[subprocess.Popen[bytes], list[int]]:
    pre = (lambda: cgroup.move(cgroup_dir, 0)) if cgroup_dir is not None else None
    sh = subprocess.Popen(
        ["sh", "-c", FAMILY],
        stdout=subprocess.PIPE,
        start_new_session=True,
        env={**os.environ, **(env or {})},
        preexec_fn=pre,  # the child joins before it starts anything
    )
    assert sh.stdout is not None
    return sh, [int(sh.stdout.readline()), int(sh.stdout.readline())]


def test_kill_marked_takes_the_marked_and_their_setsid_descendants_only() -> None:
    sh, grand = _family({MARKER: "t1.abc-1"})
    other, other_grand = _family({MARKER: "t2.def-1"})  # another daemon's run
    try:
        killed = kill_marked(lambda v: v.startswith("t1.abc-"))
        assert sh.wait(10) == -signal.SIGKILL
        wait_for(lambda: not any(pid_alive(p) for p in grand), timeout=10, what="marked gone")
        assert any("sleep 2003" in k for k in killed), killed
        assert other.poll() is None and all(pid_alive(p) for p in other_grand)
    finally:
        for p in [sh, other]:
            p.kill()
            p.wait(10)
        for pid in grand + other_grand:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(cgroup.usable_base()[0] is None, reason="cgroup v2 not usable here")
def test_a_cgroup_kill_takes_setsid_grandchildren_and_the_cgroup_goes() -> None:
    base = cgroup.usable_base()[0]
    assert base is not None
    path = base / f"{cgroup.PREFIX}test.{os.getpid()}-1"
    cgroup.create(path)
    try:
        sh, grand = _family(cgroup_dir=path)
        assert set(grand) <= set(cgroup.pids(path))
        killed = kill_cgroup(path)
        assert sh.wait(10) == -signal.SIGKILL
        wait_for(lambda: not any(pid_alive(p) for p in grand), timeout=10, what="cgroup empty")
        assert any("sleep 2003" in k for k in killed), killed
        assert not path.exists()
    finally:
        cgroup.kill(path)
        cgroup.remove(path)


def test_the_sweep_signals_a_recorded_pid_only_if_its_start_time_matches() -> None:
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        started = start_ticks(proc.pid)
        assert started is not None
        sent: list[tuple[int, int]] = []

        def send(pgid: int, signum: int, *, unreaped: bool = False) -> None:
            sent.append((pgid, signum))

        sweep_interrupted([(proc.pid, started - 1, None), (proc.pid, None, None)], send)
        assert sent == []  # a stranger with that pid, or no proof: left alone
        sweep_interrupted([(proc.pid, started, None)], send)
        assert sent == [(proc.pid, signal.SIGKILL)]
    finally:
        proc.kill()
        proc.wait(10)
    sent.clear()
    sweep_interrupted([(proc.pid, started, None)], send)  # gone: its group's leftovers may live
    assert sent == [(proc.pid, signal.SIGKILL)]


def test_a_master_that_cannot_leave_a_runs_cgroup_never_kills_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel refuses every move after the first (as into a cgroup that gained controllers):
    the master is stuck in the cgroup its first run was born in. A SIGKILL for that run must
    not write cgroup.kill there (the master would die with it); later runs get markers."""
    moves: list[Path] = []
    killed: list[Path] = []

    def move(path: str | Path, pid: int) -> None:
        moves.append(Path(path))
        if len(moves) > 1:
            raise PermissionError(errno.EACCES, "refused")

    def kill(path: Path) -> bool:
        killed.append(path)
        return True

    monkeypatch.setattr(cgroup, "move", move)
    monkeypatch.setattr(cgroup, "kill", kill)
    scopes = RunScopes("t1.abc", tmp_path)
    first = scopes.nursery
    assert first is not None and first.parent == tmp_path and first.is_dir()
    procs: list[subprocess.Popen[bytes]] = []
    specs: list[ChildSpec] = []

    def spawn(spec: ChildSpec, close_fds: Iterable[int]) -> ExecChild:
        specs.append(spec)
        procs.append(subprocess.Popen(["sleep", "30"], start_new_session=True))
        return ExecChild(pid=procs[-1].pid, log_fd=-1)

    spawner = scopes.spawner(spawn)
    try:
        child = spawner(ChildSpec(name="a", command=("sleep", "30")), ())
        assert child.scope == str(first) and scopes.nursery is None
        scopes.signal(child.pid, signal.SIGKILL)
        assert procs[0].wait(10) == -signal.SIGKILL  # its process group got it ...
        assert killed == []  # ... but not the cgroup the master is in
        later = spawner(ChildSpec(name="b", command=("sleep", "30")), ())
        assert later.scope == specs[1].env[MARKER] and later.scope.startswith("t1.abc-")
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
