"""The floor of the `command:` rows: a bare posix_spawn + waitpid-by-pid supervisor.

`python bench/floor.py --spec FILE --socket PATH --log-dir DIR` starts every program of the
JSON spec file (`[{"name": ..., "argv": [...]}, ...]`) with `os.posix_spawn` (own session,
stdin /dev/null, stdout+stderr appended to DIR/NAME.log, opened once), watches one pidfd per
child in one epoll, reaps the child that exited by its pid (`waitpid(pid)`, never
`waitpid(-1)`) and starts it again at once. No state database, no log lines, no rlimits, no
PDEATHSIG, no cgroup: what this machine costs to keep these programs running, the column the
other supervisors are held against. `--setpriv` starts each program through
`setpriv --pdeathsig KILL --` as Master Control's fast path does (for measuring that exec).

A connection to the Unix socket gets `{"NAME": PID, ...}` (JSON) and is closed: the bench's
"every workload RUNNING" check. SIGTERM: SIGTERM to every child, no more restarts, exit once
the last one is reaped. Imports only the standard library (run as a script, never imported by
the daemon).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Program:
    name: str
    argv: list[str]
    log_fd: int
    pid: int = 0
    pidfd: int = -1


class Floor:
    def __init__(self, programs: list[Program], sock: socket.socket, setpriv: str | None) -> None:
        self.programs = programs
        self.sock = sock
        self.setpriv = setpriv
        self.env = dict(os.environ)
        self.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self.ep = select.epoll()
        self.by_pidfd: dict[int, Program] = {}
        self.stopping = False
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGTERM, lambda signum, frame: None)
        signal.signal(signal.SIGINT, lambda signum, frame: None)
        self.ep.register(self.wake_r, select.EPOLLIN)
        self.ep.register(sock.fileno(), select.EPOLLIN)

    def start(self, prog: Program) -> None:
        argv = prog.argv if self.setpriv is None else [self.setpriv, "--pdeathsig", "KILL",
                                                       "--", *prog.argv]  # fmt: skip
        prog.pid = os.posix_spawn(
            argv[0],
            argv,
            self.env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, self.devnull, 0),
                (os.POSIX_SPAWN_DUP2, prog.log_fd, 1),
                (os.POSIX_SPAWN_DUP2, prog.log_fd, 2),
            ],
            setsid=True,
        )
        prog.pidfd = os.pidfd_open(prog.pid)
        self.by_pidfd[prog.pidfd] = prog
        self.ep.register(prog.pidfd, select.EPOLLIN)

    def reap(self, pidfd: int) -> None:
        prog = self.by_pidfd.pop(pidfd)
        self.ep.unregister(pidfd)
        os.close(pidfd)
        os.waitpid(prog.pid, 0)  # it has exited (its pidfd is readable): does not block
        prog.pid, prog.pidfd = 0, -1
        if not self.stopping:
            self.start(prog)

    def answer(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.sendall(json.dumps({p.name: p.pid for p in self.programs}).encode())

    def signals(self) -> None:
        try:
            got = os.read(self.wake_r, 64)
        except BlockingIOError:
            return
        if not self.stopping and (signal.SIGTERM in got or signal.SIGINT in got):
            self.stopping = True
            for prog in self.programs:
                if prog.pid:
                    try:
                        os.kill(prog.pid, signal.SIGTERM)
                    except ProcessLookupError:  # exited; its pidfd says so next
                        pass

    def run(self) -> int:
        for prog in self.programs:
            self.start(prog)
        sock_fd = self.sock.fileno()
        while not (self.stopping and not self.by_pidfd):
            for fd, _ in self.ep.poll():
                if fd == self.wake_r:
                    self.signals()
                elif fd == sock_fd:
                    self.answer()
                elif fd in self.by_pidfd:
                    self.reap(fd)
        return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", type=Path, required=True)
    ap.add_argument("--socket", type=Path, required=True)
    ap.add_argument("--log-dir", type=Path, required=True)
    ap.add_argument("--setpriv", action="store_true", help="exec through setpriv --pdeathsig")
    args = ap.parse_args(argv)
    programs = []
    for item in json.loads(args.spec.read_text()):
        path = shutil.which(item["argv"][0])
        if path is None:
            print(f"floor: {item['argv'][0]}: not found", file=sys.stderr)
            return 2
        log = os.open(args.log_dir / f"{item['name']}.log",
                      os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)  # fmt: skip
        programs.append(Program(item["name"], [path, *item["argv"][1:]], log))
    setpriv = shutil.which("setpriv") if args.setpriv else None
    if args.setpriv and setpriv is None:
        print("floor: setpriv: not found", file=sys.stderr)
        return 2
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(args.socket))
    sock.listen(16)
    return Floor(programs, sock, setpriv).run()


if __name__ == "__main__":
    sys.exit(main())
