"""The fast start of a `command:` workload: posix_spawn (vfork) of a tiny exec shim, no fork.

`spawn_child()` is the master's spawner. A `command:` workload whose bootstrap needs nothing
that only a forked Python child can do is started with `os.posix_spawn`, which glibc runs as
clone(CLONE_VM|CLONE_VFORK): no copy of the master's page tables and no copy-on-write faults
in the master afterwards. Measured on the bench machine (a 32 MiB Python process, 300 starts
of /bin/true): fork+exec 1.85 ms of parent CPU per start, multiprocessing more, posix_spawn
0.13-0.20 ms. Every other workload goes through `mastercontrol.child.spawn.spawn` (fork).

What the fork bootstrap guarantees, and how the fast path keeps it:
- own session and process group: POSIX_SPAWN_SETSID, before exec;
- signal state of a fresh process: every signal back to SIG_DFL (the master ignores SIGPIPE,
  which would survive exec) and an empty mask, by posix_spawn's setsigdef/setsigmask;
- stdin /dev/null, stdout+stderr into the log pipe: file actions; every other fd: the master
  opens all of its fds close-on-exec (Python's default, sqlite's too) and any fd it inherited
  is made close-on-exec before its first fast spawn (tests/faults/test_fd_hygiene.py checks a
  running child's fds). They are not also closed by name: glibc checks each close action
  against getrlimit(RLIMIT_NOFILE), ~70 prlimit64 calls per start with 20 workloads
  (strace -c of a churn run: 16 % of the master's syscall time), for fds exec closes anyway;
- environment: `workload_env()` (child/spawn.py), computed in the master, SYSTEMD_VARS dropped;
- umask 022 and working_dir: set in the master around the spawn and restored at once (the
  master is single-threaded, so nothing else runs meanwhile); a working_dir that cannot be
  entered sends the run down the fork path, which reports it with its reserved exit code;
- PR_SET_PDEATHSIG: a process can only arm it for itself, and exec keeps it, so the program is
  started through util-linux `setpriv --pdeathsig KILL -- ARGV` (a small C program: ~1 ms of the
  child's time, none of the master's). Without setpriv on PATH the fork path is used. Left
  open: a master SIGKILLed in the ~1 ms between the spawn and setpriv's prctl leaves that one
  child running (the fork bootstrap closes this window by checking getppid() after arming);
- nice, rlimits, user/group: posix_spawn cannot set them, so a workload with cpu_nice other
  than the master's own niceness, memory_limit_mb, max_processes, user or group takes the fork
  path (with them the bootstrap's order matters: nice and RLIMIT_NPROC while root, then the
  drop, then chdir as the user);
- reserved exit codes: a program that cannot be found or executed (checked in the master just
  before the spawn) takes the fork path, so its run ends with CHILD_EXIT_EXEC_FAILED and the
  usual log line; if it disappears in between, setpriv's own 127 (ENOENT) / 126 is the same
  code with setpriv's message;
- durability: unchanged, the lifecycle records the run (and commits it for n_times) before it
  calls the spawner.

Reaping: such a child is not multiprocessing's, so `ExecChild.exitcode` asks the kernel for
this one pid (`waitpid(pid, WNOHANG)`), never `waitpid(-1)`.

Imports only the standard library and `mastercontrol.child`; never sqlite3, `mastercontrol.store`
or `mastercontrol.daemon`.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mastercontrol.child.spawn import WORKLOAD_UMASK, ChildSpec, SpawnedChild, spawn, workload_env

# Every signal a process may set a disposition for: reset to SIG_DFL in the child.
_DEFAULT_SIGNALS = frozenset(
    int(s) for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)
)


@functools.cache
def setpriv_path() -> str | None:
    """Where util-linux setpriv is (looked up once), or None: then every run forks."""
    return shutil.which("setpriv")


@functools.cache
def _no_inherited_fds() -> None:
    """Once per master: mark every fd >= 3 close-on-exec. The master's own are already (Python
    and sqlite open theirs so); this catches any its parent left it that were inheritable,
    which the fork bootstrap's closerange() would have closed in every child."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:  # the listing's own fd, closed by now
                pass


@dataclass(eq=False)
class ExecChild:
    """A posix_spawn'ed child: reaped by its own pid through `exitcode`."""

    pid: int
    log_fd: int  # non-blocking read end of the output pipe, owned (and closed) by the master
    _status: int | None = field(default=None, repr=False)
    started: int | None = None  # start time of `pid` in clock ticks (child/scope.py)
    scope: str | None = None  # the run's cgroup path or marker (child/scope.py)

    @property
    def exitcode(self) -> int | None:
        """None while running; else the exit status, or -N if killed by signal N (as
        multiprocessing reports it). Reaps the child the first time it has exited."""
        if self._status is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: cannot happen with pid-only reaping
                self._status = 255
                return self._status
            if pid == 0:
                return None
            self._status = os.waitstatus_to_exitcode(status)
        return self._status


def spawn_child(
    spec: ChildSpec,
    close_fds: Iterable[int] = (),
    fork: Callable[[ChildSpec, Iterable[int]], SpawnedChild | ExecChild] = spawn,
) -> SpawnedChild | ExecChild:
    """The master's spawner: the fast path where it keeps every guarantee, else `fork` (the
    master's own fork, or the zygote's: child/zygote.py). `close_fds` is for the fork path
    only: on the fast path every master fd is close-on-exec."""
    if fast_path_applies(spec):
        child = spawn_exec(spec)
        if child is not None:
            return child
    return fork(spec, tuple(close_fds))


def fast_path_applies(spec: ChildSpec) -> bool:
    """Whether `spec` needs nothing posix_spawn + setpriv cannot give (module docstring)."""
    return (
        spec.command is not None
        and spec.user is None
        and spec.group is None
        and spec.max_processes is None
        and spec.memory_limit_mb is None
        and spec.cpu_nice == os.getpriority(os.PRIO_PROCESS, 0)
        and setpriv_path() is not None
    )


def spawn_exec(spec: ChildSpec) -> ExecChild | None:
    """posix_spawn `setpriv --pdeathsig KILL -- command`; None: use the fork path instead
    (working_dir cannot be entered, or the program is not there to execute). Raises OSError
    if the pipe or the spawn itself fails (the master's `spawn_failed`)."""
    assert spec.command is not None
    setpriv = setpriv_path()
    assert setpriv is not None
    _no_inherited_fds()
    env = workload_env(spec)
    read_fd, write_fd = os.pipe()  # both close-on-exec in the master
    try:
        if write_fd <= 2:  # a master started with closed stdio: keep the pipe off 0-2
            moved = os.dup(write_fd)  # the lowest free fd, >= 3 now that write_fd is taken
            os.close(write_fd)
            write_fd = moved
        os.set_blocking(read_fd, False)
        pid = _spawn_in(spec, setpriv, env, write_fd)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)  # only the child may hold the write end
    if pid is None:
        os.close(read_fd)
        return None
    return ExecChild(pid=pid, log_fd=read_fd)


def _spawn_in(
    spec: ChildSpec,
    setpriv: str,
    env: dict[str, str],
    write_fd: int,
) -> int | None:
    """Enter working_dir and the workload umask, spawn, and come back; None if the working
    dir or the program is not usable (the fork path then reports it)."""
    assert spec.command is not None
    old_cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if spec.working_dir else -1
    old_umask = os.umask(WORKLOAD_UMASK)
    try:
        if spec.working_dir:
            try:
                os.chdir(spec.working_dir)
            except OSError:
                return None
            env["PWD"] = os.getcwd()
        if shutil.which(spec.command[0], path=env.get("PATH", os.defpath)) is None:
            return None  # not found or not executable, as execvp would see it from here
        actions: list[tuple[int, ...] | tuple[int, int, str, int, int]] = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDWR, 0),
            (os.POSIX_SPAWN_DUP2, write_fd, 1),
            (os.POSIX_SPAWN_DUP2, write_fd, 2),
        ]
        return os.posix_spawn(
            setpriv,
            [setpriv, "--pdeathsig", "KILL", "--", *spec.command],
            env,
            file_actions=actions,
            setsid=True,
            setsigmask=(),
            setsigdef=_DEFAULT_SIGNALS,
        )
    finally:
        os.umask(old_umask)
        if old_cwd >= 0:
            try:
                os.fchdir(old_cwd)
            finally:
                os.close(old_cwd)
