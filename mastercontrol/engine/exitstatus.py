"""Decode how a child ended into (exit code, signal, reason, text).

The child bootstrap (`mastercontrol.child.spawn`) exits with the reserved codes below when it
fails before or around the workload's own code, so the master can tell a workload's own exit
status from a setup failure or a MemoryError. Imports only the standard library.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from enum import StrEnum

# Reserved exit codes of the child bootstrap. Workloads should not use them themselves.
CHILD_EXIT_SETUP_FAILED = 120  # rlimit, nice, chdir or fd setup failed before the workload ran
CHILD_EXIT_IMPORT_FAILED = 121  # module could not be imported / entry point not found
CHILD_EXIT_MEMORY = 122  # the workload raised MemoryError (RLIMIT_AS reached)
CHILD_EXIT_EXEC_FAILED = 127  # exec of a `command:` workload failed (like a shell)


class ExitReason(StrEnum):
    """Why a run ended; stored verbatim in sqlite and JSON, so the values never change."""

    EXIT = "exit"  # the workload exited on its own, with any status
    SIGNAL = "signal"  # killed by a signal the master did not send
    TIMEOUT = "timeout"  # the master stopped it: the run exceeded `timeout`
    MEMORY = "memory"  # MemoryError at memory_limit_mb (CHILD_EXIT_MEMORY)
    STOPPED = "stopped"  # the master stopped it: operator stop, restart, reload or shutdown
    RSS_LIMIT = "rss_limit"  # the master stopped it: resident memory over max_rss_mb
    UNHEALTHY = "unhealthy"  # the master stopped it: its health check kept failing
    SETUP_FAILED = "setup_failed"  # the bootstrap failed: setup, import or exec
    SPAWN_FAILED = "spawn_failed"  # the master could not fork the run (recorded, never decoded)
    DAEMON_LOST = "daemon_lost"  # the daemon died during the run (recorded at its next start)


# Reasons the master gives when it asks a child to stop; passed to decode() as `stop_reason`.
STOP_REASONS = frozenset(
    {ExitReason.TIMEOUT, ExitReason.STOPPED, ExitReason.RSS_LIMIT, ExitReason.UNHEALTHY}
)

_STOP_TEXT = {
    ExitReason.TIMEOUT: "timed out",
    ExitReason.STOPPED: "stopped",
    ExitReason.RSS_LIMIT: "stopped: max_rss_mb exceeded",
    ExitReason.UNHEALTHY: "stopped: health check failed",
}


@dataclass(frozen=True)
class ExitStatus:
    """How one run ended. Exactly one of exit_code and signal is set."""

    exit_code: int | None  # the status the process exited with; None when killed by a signal
    signal: int | None  # the signal that killed it; None when it exited
    reason: ExitReason
    text: str  # for humans: "exit status 0", "killed by SIGKILL", "timed out (SIGTERM)"


def is_failure(reason: str, exit_code: int | None) -> bool:
    """Whether a run that ended so counts as failed (`list`: "1 failed: timeout").

    A clean exit (status 0) is not, nor a stop the master was asked for (operator stop, restart,
    reload, shutdown: reason "stopped"); everything else is: a non-zero status, a signal, a
    limit (timeout, memory, rss_limit, unhealthy), a setup or spawn failure, a run the daemon
    lost track of when it died.
    """
    if reason == ExitReason.EXIT:
        return exit_code != 0
    return reason != ExitReason.STOPPED


def signal_name(signum: int) -> str:
    """`SIGKILL` for 9; `signal 33` for numbers the signal module has no name for."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def decode(exitcode: int, stop_reason: str | None, *, target: str | None = None) -> ExitStatus:
    """Decode `multiprocessing.Process.exitcode` (negative = killed by that signal).

    `stop_reason` is why the master asked the child to stop ("timeout", "stopped", "rss_limit",
    "unhealthy"), or None if it did not. When the master asked, that reason wins over anything
    else: a child that handles SIGTERM and exits 0 was still stopped, not a clean exit. Otherwise
    the reserved bootstrap codes give "memory" / "setup_failed", a negative code "signal" (an
    OOM-killer SIGKILL included: only the reserved code means our memory limit), else "exit".
    `target` (module or command) makes setup failure texts name what failed.
    """
    if stop_reason is not None and stop_reason not in STOP_REASONS:
        raise ValueError(
            f"unknown stop reason {stop_reason!r}; expected one of {sorted(STOP_REASONS)}"
        )
    if exitcode < 0:
        code, sig = None, -exitcode
        how = signal_name(sig)
    else:
        code, sig = exitcode, None
        how = f"exit status {exitcode}"

    if stop_reason is not None:
        reason = ExitReason(stop_reason)
        return ExitStatus(code, sig, reason, f"{_STOP_TEXT[reason]} ({how})")
    if sig is not None:
        return ExitStatus(None, sig, ExitReason.SIGNAL, f"killed by {how}")
    if exitcode == CHILD_EXIT_MEMORY:
        return ExitStatus(code, None, ExitReason.MEMORY, "MemoryError (memory_limit_mb reached)")
    setup_text = _setup_failure_text(exitcode, target)
    if setup_text is not None:
        return ExitStatus(code, None, ExitReason.SETUP_FAILED, setup_text)
    return ExitStatus(code, None, ExitReason.EXIT, how)


def _setup_failure_text(exitcode: int, target: str | None) -> str | None:
    named = f" {target!r}" if target else ""
    if exitcode == CHILD_EXIT_SETUP_FAILED:
        return "setup failed before the workload ran (limits, nice, working_dir or fds)"
    if exitcode == CHILD_EXIT_IMPORT_FAILED:
        return f"cannot import module{named} or find its entry point"
    if exitcode == CHILD_EXIT_EXEC_FAILED:
        return f"cannot execute command{named}"
    return None
