"""`mastercontrol-ctl run NAME`: run one workload once in the foreground, without the daemon.

The child gets the daemon's bootstrap (own session and process group, PDEATHSIG, limits, env,
working dir, closed fds) but keeps the terminal as its stdout/stderr. This process forwards
SIGINT/SIGTERM to the child's process group, enforces the timeout, and returns an exit code
the way a shell reports one. Reaps only through `Process.exitcode`. Imports only the standard
library, `mastercontrol.child.spawn` and `mastercontrol.child.group` (never the daemon: `ctl
run` works without it).

Exit code: the workload's own; 128+N if it was killed by signal N; 130 after Ctrl-C (the
workload was interrupted, whatever it exited with); 124 if it ran past `timeout` (as
coreutils timeout(1) does: a run that was cut short never reports success).
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from multiprocessing.process import BaseProcess
from types import FrameType

from mastercontrol.child.group import killpg
from mastercontrol.child.spawn import ChildSpec, start_child

EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 128 + signal.SIGINT
_FORWARDED = (signal.SIGINT, signal.SIGTERM)


def run_foreground(spec: ChildSpec, timeout: float | None, stop_timeout: float) -> int:
    """Run `spec` once with the caller's stdout/stderr; return its shell-style exit code.

    Must be called from the main thread (it installs signal handlers, restored on return).
    """
    received: list[int] = []

    def record(signum: int, frame: FrameType | None) -> None:
        received.append(signum)  # only record; the loop acts

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    handled = (*_FORWARDED, signal.SIGCHLD)  # SIGCHLD: a handler is what makes it wake select
    old_handlers = {sig: signal.signal(sig, record) for sig in handled}
    old_wakeup = signal.set_wakeup_fd(wake_w)
    try:
        process = start_child(spec, close_fds=(wake_r, wake_w), output_fd=None)
        return _supervise(process, spec, timeout, stop_timeout, received, wake_r)
    finally:
        signal.set_wakeup_fd(old_wakeup)
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        os.close(wake_r)
        os.close(wake_w)


def _supervise(
    process: BaseProcess,
    spec: ChildSpec,
    timeout: float | None,
    stop_timeout: float,
    received: list[int],
    wake_r: int,
) -> int:
    assert process.pid is not None
    pgid = process.pid  # the child called setsid(): its pid is its process group
    timeout_at = time.monotonic() + timeout if timeout else None
    kill_at: float | None = None  # SIGKILL deadline once a stop has been sent
    interrupted = timed_out = stopping = False
    while (code := process.exitcode) is None:
        while received:
            sig = received.pop(0)
            if sig == signal.SIGCHLD:
                continue
            if sig == signal.SIGINT and interrupted:
                killpg(pgid, signal.SIGKILL, unreaped=True)  # a second Ctrl-C: the user means it
            interrupted = interrupted or sig == signal.SIGINT
            killpg(pgid, sig, unreaped=True)
            stopping = True
            kill_at = kill_at or time.monotonic() + stop_timeout
        now = time.monotonic()
        if timeout_at is not None and now >= timeout_at and not stopping:
            print(f"mastercontrol: {spec.name} timed out after {timeout:g} s", file=sys.stderr)
            killpg(pgid, spec.stop_signal, unreaped=True)
            timed_out = stopping = True
            kill_at = now + stop_timeout
        if kill_at is not None and now >= kill_at:
            killpg(pgid, signal.SIGKILL, unreaped=True)
            kill_at = None
        deadlines = [t for t in (None if stopping else timeout_at, kill_at) if t is not None]
        wait = max(0.0, min(deadlines) - now) if deadlines else None
        # SIGCHLD (and any forwarded signal) writes to wake_r, so this wakes at the exit.
        select.select([wake_r], [], [], wait)
        try:
            os.read(wake_r, 512)
        except BlockingIOError:
            pass
    if stopping:
        killpg(pgid, signal.SIGKILL)  # grandchildren that outlived the stopped workload
    if interrupted:
        return EXIT_INTERRUPTED
    if timed_out:
        return EXIT_TIMEOUT
    return 128 - code if code < 0 else code
