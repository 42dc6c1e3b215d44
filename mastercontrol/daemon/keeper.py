"""The keeper: a small process that outlives the master and kills what its runs left.

`start()` is called first thing in mastercontrold, while the process is still a bare
interpreter (`mastercontrol.daemon.entry` calls it before `mastercontrol.daemon.main` and its
imports are loaded): it double-forks the keeper, so the keeper is nobody's child (the master
never reaps it, never sees its SIGCHLD) and shares only those first pages with the master. The
keeper holds the read end of a pipe whose write end only the master has (close-on-exec, and
every workload child closes it in its bootstrap); EOF on it means the master is gone, however
it died. Then the keeper kills everything this daemon's runs started and exits:

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
log line stamp of `mastercontrol.logfile`: importing
anything heavier here would defeat starting early.
"""

from __future__ import annotations

import gc
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from mastercontrol.child import cgroup
from mastercontrol.child.group import kill_cgroup, kill_marked

COMM = b"mc-keeper"  # its name in ps/top (/proc/<pid>/comm); its command line is the master's


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


def _main(read_fd: int, start_id: str, master: int) -> None:
    gc.freeze()  # never walk (and so copy) the pages shared with the master
    os.setsid()  # out of the terminal's process group: a Ctrl-C is for the master
    os.chdir("/")
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.closerange(3, read_fd)  # no lock, socket or database of the master's stays open here
    os.closerange(read_fd + 1, os.sysconf("SC_OPEN_MAX"))
    try:
        with open("/proc/self/comm", "wb") as f:
            f.write(COMM)
    except OSError:
        pass
    settings: dict[str, str] = {}
    buf = b""
    while True:
        try:
            chunk = os.read(read_fd, 4096)
        except InterruptedError:
            continue
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            key, _, value = line.decode(errors="replace").partition(" ")
            settings[key] = value
    cleanup(start_id, master, settings)


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
