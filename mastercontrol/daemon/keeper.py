"""The keeper: a small process that outlives the master and kills what its runs left.

`start()` is called first thing in mastercontrold, while the process is still small
(`mastercontrol.daemon.entry` calls it before `mastercontrol.daemon.main` and its imports are
loaded): it double-forks the keeper, so the keeper is nobody's child (the master never reaps
it, never sees its SIGCHLD), and the keeper execs a few lines of sh (`keeper.sh`), so it holds
none of the master's pages while it waits (~0.2 MiB of its own instead of the ~5 MiB a forked
Python kept). The keeper holds the read end of a pipe (as its stdin) whose write end only the
master has (close-on-exec, and every workload child closes it in its bootstrap); EOF on it
means the master is gone, however it died. Then it execs a bare Python (`-I -S`) that kills
everything this daemon's runs started (`cleanup`) and exits:

- cgroup mode: `cgroup.kill` on each `mc-<start id>-*` cgroup (setsid'd descendants
  included), then rmdir;
- always: every process whose environment carries this daemon's run marker
  (`MASTERCONTROL_RUN=<start id>-...`, set for runs without a cgroup), the rest of their
  process groups and their descendants (`mastercontrol.child.group.kill_marked`).

It logs what it killed to the daemon log (and stderr). It holds no lock and no fd but the pipe
and stderr, so a daemon started right after a kill -9 starts normally; the start id is new at
every daemon start, so it never touches another daemon's runs. The master tells it, one line
each, where the daemon log is (`log PATH`) and where run cgroups live (`cgroup DIR`).

Imports only the standard library and `mastercontrol.child` (cgroup, group), and at cleanup the
log line stamp of `mastercontrol.logfile`: the cleanup runs in a bare interpreter, which must
start fast and must not need site-packages.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mastercontrol.child import cgroup
from mastercontrol.child.group import kill_cgroup, kill_marked

COMM = b"mc-keeper"  # its name in ps/top (/proc/<pid>/comm); keeper.sh gives its sh half the same


@dataclass
class Keeper:
    """The master's end: the pipe's write end and this daemon start's id."""

    fd: int
    start_id: str

    def tell(self, key: str, value: str) -> None:
        """One setting line; tiny writes into a pipe the keeper drains: never blocks long."""
        try:
            os.write(self.fd, f"{key} {value}\n".encode())
        except OSError:  # the keeper is gone: cleanup after a crash falls to the restart sweep
            pass


def start() -> Keeper:
    """Fork the keeper (twice: it is reparented away from the master) and return our end."""
    master = os.getpid()
    start_id = f"{master}.{os.urandom(3).hex()}"  # no '-': the tag is `<start id>-<seq>`
    read_fd, write_fd = os.pipe()  # close-on-exec both
    pid = os.fork()
    if pid == 0:
        try:
            os.close(write_fd)
            if os.fork() == 0:
                _main(read_fd, start_id, master)
        finally:
            os._exit(0)
    os.close(read_fd)
    os.waitpid(pid, 0)  # the intermediate exits at once
    return Keeper(write_fd, start_id)


# The keeper's waiting half, in sh (dash: ~0.2 MiB of its own, where a Python keeper forked
# from the master kept ~5 MiB of pages the master went on to touch): keeper.sh beside this file.
WAIT_SH = str(Path(__file__).resolve().with_name("keeper.sh"))
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def _main(read_fd: int, start_id: str, master: int) -> None:
    """In the forked keeper: detach, keep only the pipe (as stdin) and stderr, exec the sh."""
    os.setsid()  # out of the terminal's process group: a Ctrl-C is for the master
    os.chdir("/")
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    os.dup2(read_fd, 0)
    os.set_inheritable(0, True)  # dup2 onto itself (stdin was closed) keeps close-on-exec
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    # No lock, socket or database of the master's stays open here (the exec closes the
    # close-on-exec ones; this closes the rest).
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    args = ["/bin/sh", WAIT_SH, sys.executable, PACKAGE_ROOT, start_id, str(master)]
    try:
        os.close(os.open(WAIT_SH, os.O_RDONLY))  # sh would say little if it were missing
        os.execv("/bin/sh", args)
    except OSError as exc:
        _log(None, f"cannot start the keeper ({exc.filename or '/bin/sh'}): {exc.strerror}")


def cleanup_main(argv: list[str]) -> None:
    """The exec'd cleanup half: `START_ID MASTER LOG CGROUP` (LOG, CGROUP may be empty)."""
    start_id, master, log_path, base = argv
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)  # Python's own SIGINT handler is not for here
    try:
        with open("/proc/self/comm", "wb") as f:
            f.write(COMM)  # still the keeper in ps/top
    except OSError:
        pass
    settings = {key: value for key, value in (("log", log_path), ("cgroup", base)) if value}
    cleanup(start_id, int(master), settings)


def cleanup(start_id: str, master: int, settings: dict[str, str]) -> list[str]:
    """Kill every process this daemon's runs left; log it. Returns what was killed."""
    killed: list[str] = []
    runs = 0
    base = settings.get("cgroup")
    if base:
        for path in cgroup.daemon_runs(Path(base), start_id):
            inside = kill_cgroup(path)
            runs += bool(inside)
            killed += inside
    prefix = f"{start_id}-"
    marked = kill_marked(lambda value: value.startswith(prefix))
    killed += marked
    if killed:
        how = f"{runs} run cgroup(s) and {len(marked)} marked" if base else "marked"
        _log(
            settings.get("log"),
            f"mastercontrold (pid {master}) is gone: killed {len(killed)} process(es) its runs "
            f"left ({how}): {', '.join(killed)}",
        )
    return killed


def _log(path: str | None, message: str) -> None:
    """One line in the daemon log's format, appended to the log file and written to stderr."""
    # Imported only now, once the master is gone: nothing of it sits in the keeper before.
    from mastercontrol.logfile import line_stamp

    line = f"{line_stamp(time.time())} WARNING mastercontrol.keeper: {message}\n"
    data = line.encode(errors="replace")
    if path:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError:
            pass
    try:
        os.write(2, data)
    except OSError:
        pass
