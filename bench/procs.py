"""Process-tree measurements and cleanup for the benchmark: memory, CPU, "all gone", kill.

Works on pids the bench started (a master and its descendants) and on processes whose command
line names the bench's own run directory, so it never touches anything else on the machine.
Imports the standard library and psutil; nothing from mastercontrol.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

MiB = 1024 * 1024


@dataclass(frozen=True)
class TreeMemory:
    master_rss: int  # bytes
    uss_sum: int  # bytes, master + every descendant
    pss_sum: int  # bytes, master + every descendant
    processes: int  # master included


def descendants(pid: int) -> list[psutil.Process]:
    """The live descendants of pid (children of children included); [] if pid is gone."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def tree_memory(pid: int) -> TreeMemory:
    """RSS of the master, and USS / PSS summed over the master and all its descendants.

    USS counts pages only that process maps; PSS shares each shared page among its users, so
    the PSS sum is the honest "what does this tree cost" figure for forked children.
    """
    master = psutil.Process(pid)
    rss = master.memory_info().rss
    uss = pss = count = 0
    for proc in [master, *descendants(pid)]:
        try:
            full = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        uss += full.uss
        pss += getattr(full, "pss", 0)
        count += 1
    return TreeMemory(master_rss=rss, uss_sum=uss, pss_sum=pss, processes=count)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process itself; never its reaped children's CPU."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def alive(pid: int) -> bool:
    """True while pid runs; a zombie has exited and counts as gone."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pids: Iterable[int], timeout: float, poll: float = 0.005) -> bool:
    """Wait until none of pids is alive, polling every `poll` s; False when timeout ran out."""
    left = set(pids)
    deadline = time.monotonic() + timeout
    while left:
        left = {p for p in left if alive(p)}
        if not left:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_tree(pid: int) -> None:
    """SIGKILL a master and every descendant; children are listed first (a dead master's
    children are re-parented and could no longer be found from it)."""
    kids = descendants(pid)
    _kill(pid)
    for kid in kids:
        _kill(kid.pid)


def sweep(marker: str) -> list[int]:
    """SIGKILL every process whose command line contains marker (the bench's unique run
    directory): the safety net for children a crashed master left behind."""
    me = os.getpid()
    killed: list[int] = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info["pid"] != me and any(marker in part for part in cmdline):
            _kill(proc.info["pid"])
            killed.append(proc.info["pid"])
    return killed
