"""Memory limit and niceness: the pure arithmetic, and both sides of the limit in real children."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from mastercontrol.child import limits
from mastercontrol.child.limits import MIB, memory_limit_bytes, read_vm_size
from mastercontrol.child.spawn import ChildSpec, spawn
from mastercontrol.engine.exitstatus import CHILD_EXIT_MEMORY
from tests.unit.childhelpers import kill_group, read_output, wait_exit


def run_allocating(mb: int, limit_mb: int | None) -> tuple[int, str]:
    spec = ChildSpec(
        name="alloc",
        module="tests.unit.childhelpers",
        entry_point="allocate",
        params={"mb": mb},
        memory_limit_mb=limit_mb,
    )
    child = spawn(spec)
    try:
        output = read_output(child.log_fd).decode()
        return wait_exit(child.process), output
    finally:
        kill_group(child.pid)
        wait_exit(child.process)
        os.close(child.log_fd)


def test_allocation_within_the_headroom_succeeds() -> None:
    assert run_allocating(20, limit_mb=200) == (0, "allocated 20 MB\n")


def test_allocation_past_the_headroom_is_a_memory_error() -> None:
    code, output = run_allocating(600, limit_mb=200)
    assert code == CHILD_EXIT_MEMORY
    assert "MemoryError" in output
    assert "allocated" not in output


def test_same_allocation_passes_or_fails_with_the_headroom() -> None:
    # The failure comes from memory_limit_mb, not from the machine running the test.
    assert run_allocating(250, limit_mb=1000) == (0, "allocated 250 MB\n")
    assert run_allocating(250, limit_mb=200)[0] == CHILD_EXIT_MEMORY


def test_limit_is_headroom_above_the_baseline() -> None:
    assert memory_limit_bytes(256, baseline_vm_bytes=300 * MIB) == 556 * MIB


@pytest.mark.parametrize("limit_mb", [0, -5])
def test_non_positive_limit_is_refused(limit_mb: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        memory_limit_bytes(limit_mb, 0)


def test_vm_size_is_read_from_proc_status(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython3\nVmPeak:\t  99999 kB\nVmSize:\t   14028 kB\nVmRSS: 1 kB\n")
    assert read_vm_size(str(status)) == 14028 * 1024
    assert read_vm_size() > 0  # the real file of this process


def test_missing_vm_size_is_an_error(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tkthreadd\n")  # kernel threads have no VmSize
    with pytest.raises(ValueError, match="no VmSize"):
        read_vm_size(str(status))


def test_nice_without_permission_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(which: int, who: int, prio: int) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "setpriority", refuse)
    warning = limits.apply_nice(-10)
    assert warning is not None
    assert warning.startswith("cannot set cpu_nice -10 (Permission denied); running at nice ")


def test_nice_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match=r"-20\.\.19"):
        limits.apply_nice(20)
