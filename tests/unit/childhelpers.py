"""Workload functions the spawn / limits / oneshot tests run in real children.

Each is an entry point called with **params in a forked child; they report through their
stdout (the log pipe), files, or their exit code. Imports only the standard library.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from multiprocessing.process import BaseProcess
from typing import Protocol


def return_value(value: object = None) -> object:
    return value


def exit_with(code: str | int | None) -> None:
    sys.exit(code)


def raise_error(message: str = "boom") -> None:
    raise RuntimeError(message)


def say(text: str = "hello", err: str | None = None) -> None:
    print(text)
    if err is not None:
        print(err, file=sys.stderr)


def allocate(mb: int) -> int:
    block = bytearray(mb * 1024 * 1024)  # zero-filled: every page is touched
    for i in range(0, len(block), 4096):
        block[i] = 1
    print(f"allocated {mb} MB")
    return 0


def report(path: str, hold: float = 0.0) -> None:
    """Write what the bootstrap set up to `path` (atomically), then optionally sleep."""
    info = {
        "pid": os.getpid(),
        "pgid": os.getpgid(0),
        "sid": os.getsid(0),
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "cwd": os.getcwd(),
        "sys_path0": sys.path[0],
        "env": dict(os.environ),
        "stdin": os.readlink("/proc/self/fd/0"),
        "wakeup_fd": signal.set_wakeup_fd(-1),  # returns the one inherited from bootstrap
        "blocked": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, set())),
    }
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(info, f)
    os.replace(path + ".tmp", path)
    print("ready", flush=True)
    time.sleep(hold)


def sleep(seconds: float = 60.0) -> None:
    print("sleeping", flush=True)
    time.sleep(seconds)


def start_grandchild(seconds: float = 60.0) -> None:
    """Start a `sleep` grandchild, print its pid, and wait for it."""
    proc = subprocess.Popen(["sleep", str(seconds)])
    print(f"grandchild {proc.pid}", flush=True)
    proc.wait()


def keyboard_interrupt() -> None:
    raise KeyboardInterrupt


NOT_CALLABLE = 42


def wait_for_usr1(seconds: float = 60.0) -> int:
    """Install a Python handler (as many workloads do for SIGTERM), exit 0 when it fires."""
    got: list[int] = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: got.append(signum))
    print("waiting", flush=True)
    deadline = time.monotonic() + seconds
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    return 0 if got else 1


# --- test-side helpers (run in the pytest process, not in children) ---

DEADLINE = 20.0  # generous: CI may be a loaded 2-core machine


class Reapable(Protocol):
    """A multiprocessing Process, or a fast-path ExecChild: both reap through `exitcode`."""

    @property
    def pid(self) -> int | None: ...

    @property
    def exitcode(self) -> int | None: ...


def wait_exit(process: BaseProcess | Reapable, timeout: float = DEADLINE) -> int:
    """Poll `exitcode` (the only reaping the master does) until the child has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.exitcode
        if code is not None:
            return code
        time.sleep(0.01)
    raise AssertionError(f"child {process.pid} still running after {timeout} s")


def read_output(fd: int, until: bytes | None = None, timeout: float = DEADLINE) -> bytes:
    """Read a child's non-blocking log pipe until EOF, or until `until` has been seen."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if until is not None and until in data:
            return data
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not chunk:
            return data  # EOF: every holder of the write end is gone
        data += chunk
    raise AssertionError(f"no {'EOF' if until is None else until!r} after {timeout} s: {data!r}")


def kill_group(pid: int) -> None:
    """SIGKILL a child's whole process group, ignoring one that is already gone."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def is_gone(pid: int) -> bool:
    """True if `pid` no longer runs (absent, or a zombie nobody reaped)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            stat = f.read()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def gc_report() -> None:
    """Print how many objects the child inherited frozen, then collect fully."""
    import gc

    print(f"frozen={gc.get_freeze_count()}", flush=True)
    gc.collect()
