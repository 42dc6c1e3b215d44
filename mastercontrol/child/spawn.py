"""Start one workload child with multiprocessing's fork context, and the child's bootstrap.

The master calls `spawn()`; everything named `_child_*` runs only in the forked child. Reaping
is NOT done here: the master reads `SpawnedChild.process.exitcode` and nothing else (never
`waitpid(-1)`, never `Process.sentinel`, never `join(timeout)`; see "Reaping" below). Imports
only the standard library, `mastercontrol.config`, `mastercontrol.engine` and
`mastercontrol.child`; never sqlite3 (the child must not touch the master's connection), any
third-party package, `mastercontrol.store` or `mastercontrol.daemon`.

Reaping: `Process.start()` calls multiprocessing's `_cleanup()`, which polls every other live
Process with `waitpid(pid, WNOHANG)` and stores the status in that Process object, so a sibling
that is reaped there still reports its `exitcode` later. That is safe as long as the master
only ever looks at `process.exitcode`. The bootstrap closes every inherited fd >= 3, which
includes multiprocessing's sentinel pipe, so `Process.sentinel` becomes readable as soon as the
child is set up (and `exec` closes it anyway), and `Process.join(timeout)` then falls through to
a *blocking* waitpid: do not use either.

Shutdown: children are started with daemon=False (so a workload may use multiprocessing
itself). multiprocessing's atexit hook joins non-daemon children when the master exits
through `sys.exit`, so the master must stop every child first, or leave with os._exit().
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]
import ctypes
import ctypes.util
import fcntl
import functools
import gc
import importlib
import multiprocessing
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any, NoReturn

from mastercontrol.child.limits import apply_memory_limit, apply_nice, apply_process_limit
from mastercontrol.child.privileges import PrivilegeError, drop_privileges, workload_environment
from mastercontrol.config.model import WorkloadConfig
from mastercontrol.engine.exitstatus import (
    CHILD_EXIT_EXEC_FAILED,
    CHILD_EXIT_IMPORT_FAILED,
    CHILD_EXIT_MEMORY,
    CHILD_EXIT_SETUP_FAILED,
)

# "fork", chosen once for the whole package: the master is single-threaded, so fork is safe,
# and on a Pi it is cheap: the child shares the interpreter and every module the master already
# imported (copy-on-write pages). "spawn"/"forkserver" would start and import a fresh
# interpreter for every workload run, seconds of CPU on a Pi Zero for each cron tick.
CTX = multiprocessing.get_context("fork")

# Variables that tell a process it is the service systemd started; a workload that inherited
# them would send sd_notify messages or claim sockets in the master's name. The one list: the
# master unsets them at startup (daemon/systemd.py) and every child again (`ctl run` has no
# master to do it).
SYSTEMD_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WORKLOAD_UMASK = 0o022  # the master's own is 077 (daemon/dirs.py); workloads get the usual one
_MAXFD = os.sysconf("SC_OPEN_MAX")
_MSG = "mastercontrol: "  # prefix of the bootstrap's own lines in the workload log

# Streams the child replaced; kept referenced so their finalizers never close fds 0-2.
_replaced_streams: list[object] = []


@dataclass(frozen=True)
class ChildSpec:
    """Everything the child bootstrap needs to run one workload; no master state."""

    name: str
    module: str | None = None  # Python module to import in the child ...
    entry_point: str = "run"  # ... and the callable in it, called with **params
    params: Mapping[str, Any] = field(default_factory=dict)
    command: tuple[str, ...] | None = None  # argv to exec instead of a module
    env: Mapping[str, str] = field(default_factory=dict)  # added to the inherited environment
    clean_env: bool = False  # True: start from a minimal environment (child/privileges.py)
    working_dir: str | None = None  # chdir there; also sys.path[0] for module workloads
    user: str | None = None  # run as this account (name or uid) ...
    group: str | None = None  # ... and group (default: the user's); needs a root master
    max_processes: int | None = None  # RLIMIT_NPROC
    memory_limit_mb: int | None = None  # RLIMIT_AS headroom above the bootstrap baseline
    cpu_nice: int = 0  # absolute niceness -20..19
    stop_signal: int = signal.SIGTERM  # what a timeout / stop sends first

    def __post_init__(self) -> None:
        if (self.module is None) == (self.command is None):
            raise ValueError(f"{self.name}: exactly one of module and command must be set")
        if self.command is not None and not self.command:
            raise ValueError(f"{self.name}: command must not be empty")

    @classmethod
    def from_config(cls, cfg: WorkloadConfig) -> ChildSpec:
        return cls(
            name=cfg.name,
            module=cfg.module if cfg.command is None else None,
            entry_point=cfg.entry_point,
            params=dict(cfg.params),
            command=cfg.command,
            env=dict(cfg.env),
            clean_env=cfg.clean_env,
            working_dir=cfg.working_dir,
            user=cfg.user,
            group=cfg.group,
            max_processes=cfg.max_processes,
            memory_limit_mb=cfg.memory_limit_mb,
            cpu_nice=cfg.cpu_nice,
            stop_signal=signal.Signals[f"SIG{cfg.stop_signal}"],
        )


@dataclass(frozen=True)
class SpawnedChild:
    """A started child: reap it through `exitcode`; read its output from `log_fd`."""

    process: BaseProcess
    pid: int
    log_fd: int  # non-blocking read end of the output pipe, owned (and closed) by the master
    started: int | None = None  # start time of `pid` in clock ticks (/proc/<pid>/stat field 22)
    scope: str | None = None  # the run's cgroup path or marker (child/scope.py)

    @property
    def exitcode(self) -> int | None:
        """None while running; else the exit status, or -N if killed by signal N."""
        return self.process.exitcode


def spawn(spec: ChildSpec, close_fds: Iterable[int] = ()) -> SpawnedChild:
    """Start a workload child whose stdout and stderr go into a new pipe; never blocks.

    `close_fds` are the master's own fds (wakeup pipe, control socket, log pipes...), closed
    by name first; the child then closes every other fd >= 3 too, so a forgotten one cannot
    leak. Raises OSError if the pipe or the fork fails (the master's `spawn_failed`).
    """
    read_fd, write_fd = os.pipe()  # both close-on-exec in the master
    try:
        os.set_blocking(read_fd, False)
        process = start_child(spec, close_fds, output_fd=write_fd)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        # Only the child may hold the write end, or the master would never see EOF.
        os.close(write_fd)
    assert process.pid is not None
    return SpawnedChild(process=process, pid=process.pid, log_fd=read_fd)


# What the child changes in its os.environ: names to unset, (name, value) pairs to set.
EnvironmentDelta = tuple[tuple[str, ...], tuple[tuple[str, str], ...]]
_EnvironKey = tuple[tuple[bytes, bytes], ...]


def workload_env(spec: ChildSpec) -> dict[str, str]:
    """The environment `spec`'s workload runs with (`workload_environment()`), a new dict.

    Computed in the master. Without `user` it is cached per master environment, `env` and
    `clean_env`: iterating `os.environ` decodes every variable in Python, a quarter of a
    millisecond per start (cProfile of a churn run). With `user` the account is looked up anew.
    """
    key = _environ_key() if spec.user is None else None
    if key is None:
        return workload_environment(
            os.environ, spec.env, clean=spec.clean_env, user=spec.user, drop=SYSTEMD_VARS
        )
    return dict(_cached_environment(key, tuple(spec.env.items()), spec.clean_env))


def environment_delta(spec: ChildSpec) -> EnvironmentDelta:
    """What a forked child must unset and set so that its os.environ is `workload_env(spec)`.

    Computed in the master before the fork, so the child touches only the variables that
    change: building the environment in the child (iterating os.environ, a new dict) dirtied
    ~0.2 MiB of pages it shares with the master, in every child (measured: 8 forks, USS).
    """
    key = _environ_key() if spec.user is None else None
    if key is None:
        return delta_to(workload_env(spec))
    return _cached_delta(key, tuple(spec.env.items()), spec.clean_env)


def _environ_key() -> _EnvironKey | None:
    """The master's environment as raw bytes, a cheap cache key (its underlying bytes dict is
    read at C speed); None if this Python hides it: then nothing is cached."""
    data = getattr(os.environ, "_data", None)
    return tuple(data.items()) if isinstance(data, dict) else None


@functools.lru_cache(maxsize=64)
def _cached_environment(
    environ: _EnvironKey, env: tuple[tuple[str, str], ...], clean: bool
) -> dict[str, str]:
    # `environ` is only the key: it is os.environ, as it is now. Callers copy the result.
    return workload_environment(os.environ, dict(env), clean=clean, user=None, drop=SYSTEMD_VARS)


@functools.lru_cache(maxsize=64)
def _cached_delta(
    environ: _EnvironKey, env: tuple[tuple[str, str], ...], clean: bool
) -> EnvironmentDelta:
    return delta_to(_cached_environment(environ, env, clean))


def delta_to(wanted: Mapping[str, str]) -> EnvironmentDelta:
    """What to unset and set in this process's os.environ to make it `wanted` (the zygote
    computes it against its own environment, child/zygote.py)."""
    unset = tuple(name for name in os.environ if name not in wanted)
    changed = tuple((k, v) for k, v in wanted.items() if os.environ.get(k) != v)
    return unset, changed


def start_child(
    spec: ChildSpec, close_fds: Iterable[int] = (), output_fd: int | None = None
) -> BaseProcess:
    """Fork a child running `spec`; `output_fd=None` keeps the caller's stdout/stderr."""
    _prctl()  # resolve libc before fork so the child does no dlopen
    args = (spec, tuple(close_fds), output_fd, os.getpid(), environment_delta(spec))
    process = CTX.Process(target=_child_main, args=args, name=f"mc:{spec.name}", daemon=False)
    # Block every signal across fork: until the child has reset its handlers and the wakeup fd,
    # a signal delivered to it would run the master's handler and write into the master's
    # wakeup pipe. The child unblocks after the reset; the master restores its mask here and
    # then receives whatever arrived meanwhile.
    old_mask = _sigmask(signal.SIG_BLOCK, _ALL_SIGNALS)
    # Every object the master has is moved to the GC's permanent generation for the fork: the
    # child's collections then never walk (and so never copy) the pages it shares with the
    # master. Measured: a full collection in a child dirties 8 MiB without this, 1.3 MiB with
    # it. Both calls only splice lists; the master unfreezes at once, so its own garbage is
    # still collected.
    gc.freeze()
    try:
        process.start()
    finally:
        gc.unfreeze()
        _sigmask(signal.SIG_SETMASK, old_mask)
    # multiprocessing keeps every started Process in a module-level set and polls all of them
    # (one wait4 each) at every later start(), and joins them at interpreter exit. The master
    # owns its children and reaps them through `exitcode` alone; with hundreds of workloads
    # that bookkeeping is pure cost (and the exit-time join could hang a stopping master).
    children = getattr(multiprocessing.process, "_children", None)
    if isinstance(children, set):
        children.discard(process)
    return process


# Computed once: signal.valid_signals() builds a set of Signals enums on every call, and
# signal.pthread_sigmask() turns the mask it returns into enums too (64 of them when it hands
# back "everything blocked"); _signal's own function deals in ints. Together that cost more
# than the rest of the fork's bookkeeping in a master restarting hundreds of runs.
_ALL_SIGNALS = frozenset(int(s) for s in signal.valid_signals())
_sigmask: Callable[[int, Iterable[int]], set[int]] = _signal.pthread_sigmask
# What a Python workload has other than SIG_DFL (as `python -c` has): see _child_reset_signals.
_PYTHON_SIGNALS = (signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ)


@functools.cache
def _prctl() -> Callable[..., int]:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl = libc.prctl
    # The kernel reads arguments 2-5 as unsigned long: pass them at that width, not as int.
    prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    prctl.restype = ctypes.c_int
    func: Callable[..., int] = prctl
    return func


class _SetupError(Exception):
    """A bootstrap step failed; the message goes to the log, the child exits 120."""


def _child_main(
    spec: ChildSpec,
    close_fds: tuple[int, ...],
    output_fd: int | None,
    master_pid: int,
    delta: EnvironmentDelta,
    signals_fresh: bool = False,
) -> NoReturn:
    """The child bootstrap, in order. Leaves only through os._exit(). `signals_fresh`: the
    parent (the zygote) already has a Python workload's signal dispositions."""
    code = CHILD_EXIT_SETUP_FAILED
    try:
        _child_reset_signals(exec_follows=spec.command is not None, fresh=signals_fresh)
        os.setsid()  # own session and process group: the master stops it with killpg
        _child_arm_deathsig(master_pid)
        _child_setup_fds(close_fds, output_fd)
        _child_setup_environment(delta)
        warning = apply_nice(spec.cpu_nice)  # still root: a negative cpu_nice works with user
        if warning:
            print(_MSG + "warning: " + warning, file=sys.stderr)
        if spec.max_processes is not None:
            apply_process_limit(spec.max_processes)  # before the drop: lowers the hard limit
        if drop_privileges(spec.user, spec.group):
            _child_arm_deathsig(master_pid)  # the kernel clears it on a credential change
        _child_enter_working_dir(spec)  # as the user: it must be able to get in itself
        if spec.memory_limit_mb is not None:
            apply_memory_limit(spec.memory_limit_mb)  # last: setup itself must not hit it
        code = _child_exec(spec.command) if spec.command else _child_run_module(spec)
    except KeyboardInterrupt:
        _child_die_of_sigint()
    except MemoryError:
        code = _child_memory_error()
    except (_SetupError, PrivilegeError, OSError, ValueError) as exc:
        _child_print(f"setup failed: {exc}")
        code = CHILD_EXIT_SETUP_FAILED
    except BaseException:  # a bug in the bootstrap itself: still never return into the master
        traceback.print_exc()
        code = CHILD_EXIT_SETUP_FAILED
    finally:
        _child_flush()
        os._exit(code)


def _child_reset_signals(exec_follows: bool, fresh: bool = False) -> None:
    """Give the child the signal state of a fresh process (fact 2 of STYLE.md). `fresh`: the
    dispositions already are a Python workload's (the zygote set them once for all its runs:
    ~0.08 MiB of copied pages less per run, bench/fork_pages.py's "served" row), and only an
    exec needs three put back."""
    signal.set_wakeup_fd(-1)  # the master's self-pipe; a child signal must not land there
    if fresh:
        if exec_follows:
            for python_sig in _PYTHON_SIGNALS:
                signal.signal(python_sig, signal.SIG_DFL)
        _sigmask(signal.SIG_SETMASK, ())  # ints: no 64 Signals enums for the old mask
        return
    for sig in _ALL_SIGNALS:
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):  # glibc-reserved real-time signals
            pass
    if not exec_follows:
        # A Python workload sees what `python -c` would: KeyboardInterrupt on SIGINT, and
        # EPIPE/EFBIG as exceptions. An exec'd program keeps SIG_DFL: ignored dispositions
        # survive exec and would surprise it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())  # start_child() blocked them all


def _child_setup_fds(close_fds: tuple[int, ...], output_fd: int | None) -> None:
    """stdin from /dev/null, stdout+stderr to `output_fd`, every other fd closed."""
    for fd in close_fds:
        if fd > 2 and fd != output_fd:
            try:
                os.close(fd)
            except OSError:
                pass
    if output_fd is not None and output_fd <= 2:  # a master started with closed stdio
        output_fd = fcntl.fcntl(output_fd, fcntl.F_DUPFD, 3)
    null_fd = os.open(os.devnull, os.O_RDWR)
    os.dup2(null_fd, 0)
    if output_fd is not None:
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
    # Sentinel pipes of multiprocessing, the master's sqlite db, sockets, other children's
    # log pipes: none of it belongs to the workload.
    os.closerange(3, _MAXFD)
    for fd in (0, 1, 2):
        try:
            os.set_inheritable(fd, True)  # survive exec; dup2 onto itself keeps CLOEXEC
        except OSError:  # the caller's stdout/stderr was closed: leave it so
            pass
    _replaced_streams.extend([sys.stdin, sys.stdout, sys.stderr])
    # Line-buffered, so a workload's print() reaches the log when the line ends.
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = open(  # noqa: SIM115
        1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False
    )
    sys.stderr = open(  # noqa: SIM115
        2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False
    )


def _child_arm_deathsig(master_pid: int) -> None:
    if _prctl()(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise _SetupError(f"prctl(PR_SET_PDEATHSIG): {os.strerror(ctypes.get_errno())}")
    if os.getppid() != master_pid:  # the master died before PDEATHSIG was armed
        os._exit(CHILD_EXIT_SETUP_FAILED)


def _child_setup_environment(delta: EnvironmentDelta) -> None:
    # The master runs with umask 077 so its own files are private; a workload gets the usual one.
    os.umask(WORKLOAD_UMASK)
    unset, changed = delta
    for name in unset:
        os.environ.pop(name, None)
    for name, value in changed:
        os.environ[name] = value


def _child_enter_working_dir(spec: ChildSpec) -> None:
    if spec.working_dir is not None:
        try:
            os.chdir(spec.working_dir)
        except OSError as exc:
            raise _SetupError(f"working_dir {spec.working_dir}: {exc.strerror}") from None
        os.environ["PWD"] = os.getcwd()
    if spec.module is not None:
        cwd = os.getcwd()
        sys.path.insert(0, cwd)  # like `python -m`: the working dir is importable
        # The master may have listed this directory before the workload's files appeared (a
        # deploy): drop just its cached listing. Other entries refresh themselves when their
        # directory's mtime changes. importlib.invalidate_caches() would touch every finder the
        # master built and cost each child ~0.4 MiB of copied pages (measured with 10 forks).
        sys.path_importer_cache.pop(cwd, None)


def _child_exec(command: tuple[str, ...]) -> int:
    _child_flush()
    try:
        os.execvpe(command[0], command, os.environ)
    except OSError as exc:
        _child_print(f"cannot execute {command[0]!r}: {exc.strerror}")
    return CHILD_EXIT_EXEC_FAILED


def _child_run_module(spec: ChildSpec) -> int:
    assert spec.module is not None
    try:
        module = importlib.import_module(spec.module)
    except (MemoryError, KeyboardInterrupt, SystemExit):
        raise
    except ModuleNotFoundError as exc:
        if not _is_part_of(exc.name, spec.module):
            traceback.print_exc()  # an import inside the workload's own code: show where
        _child_print(f"cannot import module {spec.module!r}: {exc}")
        return CHILD_EXIT_IMPORT_FAILED
    except BaseException:
        traceback.print_exc()
        _child_print(f"cannot import module {spec.module!r}")
        return CHILD_EXIT_IMPORT_FAILED
    func = getattr(module, spec.entry_point, None)
    if not callable(func):
        what = "is not callable" if func is not None else "not found"
        _child_print(f"entry point {spec.module}:{spec.entry_point} {what}")
        return CHILD_EXIT_IMPORT_FAILED
    try:
        result = func(**spec.params)
    except SystemExit as exc:
        code = _exit_code_of(exc.code, "sys.exit")
    except (MemoryError, KeyboardInterrupt):
        raise
    except BaseException:
        traceback.print_exc()
        code = 1
    else:
        code = _exit_code_of(result, "return value") if type(result) is int else 0
    _child_join_threads()  # like the interpreter: non-daemon threads finish first
    return code


def _is_part_of(missing: str | None, module: str) -> bool:
    """Whether the module import could not find is `module` or one of its packages: then the
    one line says it all (validate checks this too, but files may go after the load)."""
    return missing is not None and (module == missing or module.startswith(missing + "."))


def _exit_code_of(value: object, what: str) -> int:
    """sys.exit()'s rules: None is 0, an int is itself, anything else is printed and 1."""
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= 255:
            return value
        _child_print(f"{what} {value} is not an exit code 0..255; exiting 1")
        return 1
    print(value, file=sys.stderr)
    return 1


def _child_join_threads() -> None:
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()


def _child_memory_error() -> int:
    # Say it in one short line: there may be no memory left for a traceback.
    _child_print("MemoryError: memory_limit_mb reached (RLIMIT_AS)")
    return CHILD_EXIT_MEMORY


def _child_die_of_sigint() -> NoReturn:
    """An uncaught KeyboardInterrupt ends the process by SIGINT, as CPython does."""
    _child_flush()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
    os._exit(128 + signal.SIGINT)  # not reached unless SIGINT is blocked


def _child_print(message: str) -> None:
    try:
        print(_MSG + message, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _child_flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
