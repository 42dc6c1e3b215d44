"""Resource limits a workload child applies to itself: address space, processes, niceness.

Both functions run IN THE CHILD, after fork and before the workload's code; the master never
limits itself. Imports only the standard library (no psutil: the child must not pay for it).

Memory limit semantics (`memory_limit_mb`):
    A child forked from the master starts with the master's whole address space: the
    interpreter, every module the master imported, its heap and mappings that are reserved but
    never touched. Its virtual size (VmSize) at that moment is the *baseline*, unknown to the
    user and different on every device and release, so a cap on the absolute VmSize would be
    unusable (too low and the workload cannot even start, too high and it caps nothing).
    `memory_limit_mb` is therefore HEADROOM: at bootstrap the child reads its own VmSize from
    /proc/self/status and sets RLIMIT_AS (soft and hard) to baseline + memory_limit_mb MiB.
    An allocation past it fails: Python raises MemoryError, which the bootstrap turns into exit
    code CHILD_EXIT_MEMORY (122). Address space is not RSS: every thread costs its stack
    (8 MiB) and possibly a 64 MiB glibc malloc arena of reservation, so leave room for threads.
    For a `command:` workload the limit is set the same way before exec and survives exec; the
    exec'd program starts far below the Python baseline, so its effective cap is a little looser
    than memory_limit_mb. Resident memory is capped separately (max_rss_mb, by sampling).

Niceness semantics (`cpu_nice`): the absolute nice value -20..19 (not an increment over the
master's). Lowering it below the current value needs root or CAP_SYS_NICE; without them the
child keeps its inherited niceness and the run goes on with a warning in its log.
"""

from __future__ import annotations

import errno
import os
import resource

MIB = 1024 * 1024


def read_vm_size(status_path: str = "/proc/self/status") -> int:
    """The current virtual size of this process in bytes (VmSize of /proc/self/status)."""
    with open(status_path, encoding="ascii", errors="replace") as f:
        for line in f:
            if line.startswith("VmSize:"):
                value, unit = line.split()[1:3]
                if unit != "kB":  # the kernel has always used kB; refuse to guess otherwise
                    raise ValueError(f"unexpected VmSize unit {unit!r}")
                return int(value) * 1024
    raise ValueError(f"no VmSize in {status_path}")


def memory_limit_bytes(limit_mb: int, baseline_vm_bytes: int) -> int:
    """RLIMIT_AS for a child whose address space is `baseline_vm_bytes` at bootstrap."""
    if limit_mb <= 0:
        raise ValueError(f"memory limit must be positive, got {limit_mb} MB")
    return baseline_vm_bytes + limit_mb * MIB


def apply_memory_limit(limit_mb: int) -> int:
    """Cap this process's address space at its baseline + `limit_mb` MiB; return the cap.

    Soft and hard limits are both set so the workload cannot raise them back (unless it is
    root). If the inherited hard limit is already lower, that lower limit is kept: a child can
    never widen what its parent was given. Raises OSError/ValueError on failure.
    """
    wanted = memory_limit_bytes(limit_mb, read_vm_size())
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_AS, (wanted, wanted))
    return wanted


def apply_process_limit(count: int) -> int:
    """Cap the processes (threads, on Linux) of this process's REAL user at `count`; return it.

    RLIMIT_NPROC is checked at fork against every process of the real uid, not only this
    workload's, and root ignores it: it is meaningful with `user:`. Set before the privileges
    are dropped (so the hard limit can be lowered), kept lower if already lower.
    """
    if count < 1:
        raise ValueError(f"max_processes must be at least 1, got {count}")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    if hard != resource.RLIM_INFINITY:
        count = min(count, hard)
    resource.setrlimit(resource.RLIMIT_NPROC, (count, count))
    return count


def apply_nice(n: int) -> str | None:
    """Set this process's absolute niceness to `n`; return a warning if not permitted.

    EPERM/EACCES (raising priority without privilege) is a warning, not a failure: a workload
    that runs at the wrong priority is better than one that does not run. Other errors raise.
    """
    if not -20 <= n <= 19:
        raise ValueError(f"cpu_nice must be in -20..19, got {n}")
    try:
        os.setpriority(os.PRIO_PROCESS, 0, n)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EACCES):
            raise
        current = os.getpriority(os.PRIO_PROCESS, 0)
        return f"cannot set cpu_nice {n} ({exc.strerror}); running at nice {current}"
    return None
