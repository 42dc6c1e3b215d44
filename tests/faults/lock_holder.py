"""Another process that takes the state database's write lock at the worst moment.

`python -m tests.faults.lock_holder DB SECONDS HOLDS HOLD_SECONDS` watches sqlite's WAL write
lock (a POSIX lock on byte 120 of `DB-shm`, asked with F_GETLK, which takes nothing). When the
daemon is seen writing, it waits for the lock's next release and takes it. If the newest run is
committed but has no pid yet, the release was the daemon's durable commit of a counted run
before its fork, and the daemon is about to reopen its batch: the holder keeps the lock for
HOLD_SECONDS (longer than the daemon's busy timeout) and prints `held N`. Any other release it
gives back at once. It stops after HOLDS holds or SECONDS. A real process and a real sqlite
lock, no mock: the race it provokes is the one a backup job or an operator's sqlite3 shell can
hit. Imports the standard library only.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import struct
import sys
import time

WAL_WRITE_LOCK_BYTE = 120  # sqlite os_unix.c: UNIX_SHM_BASE + WAL_WRITE_LOCK
# struct flock on 64-bit Linux: l_type, l_whence, (pad), l_start, l_len, l_pid, (pad).
FLOCK = "hhqqi4x"


def writer_active(shm_fd: int) -> bool:
    """True while another process holds the WAL write lock."""
    query = struct.pack(FLOCK, fcntl.F_WRLCK, os.SEEK_SET, WAL_WRITE_LOCK_BYTE, 1, 0)
    l_type = struct.unpack(FLOCK, fcntl.fcntl(shm_fd, fcntl.F_GETLK, query))[0]
    return bool(l_type != fcntl.F_UNLCK)


def main(db: str, seconds: float, holds: int, hold_seconds: float) -> int:
    try:
        # The moment lasts microseconds; on a loaded machine a holder at normal priority sees
        # too few of them (as root, CI's case, it may run ahead of the test suite's noise).
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    except OSError:
        pass
    conn = sqlite3.connect(db, timeout=0, isolation_level=None)
    shm_fd = os.open(f"{db}-shm", os.O_RDWR)
    end = time.monotonic() + seconds
    held = 0
    while held < holds and time.monotonic() < end:
        while not writer_active(shm_fd):
            if time.monotonic() >= end:
                return 0
        while time.monotonic() < end:  # the daemon is writing: take the lock when it lets go
            try:
                conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError:
                continue
        else:
            return 0
        newest = conn.execute("SELECT pid, ended_at FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        if newest is not None and newest == (None, None):
            held += 1
            print(f"held {held}", flush=True)
            time.sleep(hold_seconds)
        conn.execute("ROLLBACK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
