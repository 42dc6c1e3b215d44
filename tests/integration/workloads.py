"""Workload functions the integration tests run inside a real mastercontrold."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path


def sleep_forever() -> None:
    while True:
        time.sleep(3600)


def exit_with(code: int = 0) -> int:
    print(f"exiting with {code}", flush=True)
    return code


def crash() -> None:
    raise RuntimeError("boom")


def sleep_for(seconds: float = 1.0, marker: str = "") -> None:
    if marker:
        with open(marker, "a") as f:
            f.write(f"{os.getpid()}\n")
    time.sleep(seconds)


def count_run(marker: str, seconds: float = 0.0) -> None:
    """Append this run's pid to `marker` (one line per run), then sleep a little."""
    with open(marker, "a") as f:
        f.write(f"{os.getpid()}\n")
        f.flush()
        os.fsync(f.fileno())
    time.sleep(seconds)


def allocate(megabytes: int) -> None:
    block = bytearray(megabytes * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    print(f"allocated {megabytes} MB", flush=True)


def with_grandchild(pidfile: str) -> None:
    """Start a grandchild that sleeps forever, record its pid, then sleep forever."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    Path(pidfile).write_text(str(proc.pid))
    sleep_forever()


def ignore_sigterm(pidfile: str = "") -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if pidfile:
        Path(pidfile).write_text(str(os.getpid()))
    sleep_forever()


def chatter(lines: int = 100, size: int = 100) -> None:
    for i in range(lines):
        print(f"{i:08d} " + "x" * size, flush=True)
    sleep_forever()


def spew_no_newline(total_mb: int = 10) -> None:
    chunk = b"y" * 65536
    out = sys.stdout.buffer
    for _ in range(total_mb * 16):
        out.write(chunk)
    out.flush()
    sleep_forever()


def print_env(keys: str = "") -> None:
    for key in keys.split(","):
        print(f"{key}={os.environ.get(key)}", flush=True)
    print(f"cwd={os.getcwd()}", flush=True)


def listen_forever(port: int) -> None:
    """A service that is healthy for a TCP probe: it listens on 127.0.0.1:port."""
    import socket

    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(16)
    while True:
        conn, _ = srv.accept()
        conn.close()


def grow(megabytes: int) -> None:
    """Hold `megabytes` of touched memory, then sleep: its RSS stays that high."""
    block = bytearray(megabytes * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    print(f"holding {megabytes} MB", flush=True)
    sleep_forever()


def trap_signals(marker: str, pidfile: str) -> None:
    """Record each HUP/USR1 it gets in `marker` and keep running; a grandchild in its process
    group (pid in `pidfile`) keeps the default actions, so USR1 ends it."""

    def record(signum: int, frame: object) -> None:
        with open(marker, "a") as f:
            f.write(f"{signal.Signals(signum).name}\n")

    signal.signal(signal.SIGHUP, record)
    signal.signal(signal.SIGUSR1, record)
    proc = subprocess.Popen(["sleep", "3600"])
    Path(pidfile).write_text(str(proc.pid))
    while True:
        time.sleep(3600)


def report_identity() -> None:
    """Print who this run is, as one JSON line: ids, groups, the account's variables and the
    parent-death signal (the kernel clears it when credentials change)."""
    import ctypes
    import json

    libc = ctypes.CDLL(None, use_errno=True)
    sig = ctypes.c_int(0)
    libc.prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG
    info = {
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "gid": os.getgid(),
        "egid": os.getegid(),
        "groups": sorted(os.getgroups()),
        "env": {k: os.environ.get(k) for k in ("HOME", "USER", "LOGNAME")},
        "pdeathsig": sig.value,
        "cwd": os.getcwd(),
    }
    print("identity " + json.dumps(info), flush=True)


def report_environment() -> None:
    """Print the names of this run's environment variables, as one JSON line."""
    import json

    print("environment " + json.dumps(sorted(os.environ)), flush=True)


def fork_until_refused(limit: int = 50) -> None:
    """Fork sleeping children until fork fails (or `limit`); print how many were made."""
    pids: list[int] = []
    error = ""
    try:
        while len(pids) < limit:
            pid = os.fork()
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            pids.append(pid)
    except OSError as exc:
        error = exc.strerror or str(exc)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    print(f"forked {len(pids)} ({error})", flush=True)


def select_sleep(seconds: float = 1.0, marker: str = "") -> None:
    """sleep_for without time.sleep: under libfaketime with FAKETIME_DONT_FAKE_MONOTONIC
    (tests/integration/test_clock_jumps.py), Python 3.11's time.sleep fails with EINVAL
    (its clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME); libfaketime issue #426)."""
    if marker:
        with open(marker, "a") as f:
            f.write(f"{os.getpid()}\n")
    end = time.monotonic() + seconds
    for _ in range(10_000):
        left = end - time.monotonic()
        if left <= 0:
            return
        select.select([], [], [], left)


def crash_unless(flag: str) -> None:
    """Crash at once while `flag` does not exist; once it does, stay up."""
    if not os.path.exists(flag):
        raise RuntimeError(f"no {flag}")
    sleep_forever()
