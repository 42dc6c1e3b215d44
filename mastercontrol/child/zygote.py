"""The zygote: a small fork server that starts every fork-path workload run for the master.

Why: a child forked from the real master writes to pages of the master's big, fragmented heap
(reference counts, allocator free lists) and copies 3.5-4.5 MiB of them; one forked from an
interpreter that imported only the child bootstrap's modules copies ~1.9 MiB (bench/RESULTS.md,
"The zygote"). And fork() of a small process is cheaper for the master than fork() of its own
~26 MiB (page tables, copy-on-write faults afterwards).

`start()` forks the zygote from the master while the master is still small
(`mastercontrol.daemon.entry` calls it next to the keeper, before the daemon's heavy imports;
`python -m mastercontrol.daemon.main` and a restart fork it later, from the full master). The
zygote blocks every signal, arms PR_SET_PDEATHSIG on the master, keeps only its end of an
AF_UNIX SOCK_SEQPACKET socketpair (and stdio), `gc.freeze()`s and then only serves spawn
requests: one message per run, the pickled (ChildSpec, workload environment) with the log
pipe's write end and a "go" pipe's read end passed by SCM_RIGHTS. For each it forks an
intermediate I, I forks the workload W and exits at once; the master is a child subreaper
(PR_SET_CHILD_SUBREAPER), so W is reparented to the master. The zygote reaps I (after which W
is the master's child) and replies with W's pid. The master then writes one byte into the go
pipe: only then does W run the unchanged bootstrap (`_child_main`: signals, setsid, PDEATHSIG
armed on the master and getppid() re-checked, fds, limits, user, environment, chdir, reserved
exit codes). A W whose go pipe reaches EOF instead (the master gave up on the reply, or died)
exits at once without running anything, so a spawn the master falls back from never runs twice.

The master is W's parent: it sees W's exit by SIGCHLD at once and reaps it by pid
(`ExecChild.exitcode`: `waitpid(pid, WNOHANG)`, never `waitpid(-1)`), and a zygote crash harms
no running workload. On any zygote failure (no reply within REPLY_TIMEOUT, EOF, an error
reply) the master kills the zygote, forks that run itself (`child.spawn.spawn`, as without a
zygote), logs once, and forks a new zygote at a later spawn, RESTART_BACKOFF after the failure
(doubling to RESTART_BACKOFF_MAX while it keeps failing).

Subreaper consequence: every orphaned descendant of a run is reparented to the master and
becomes its zombie. `Zygote.reap_other(pid)` reaps a pid the master's reaper found that is no
workload's: the zygote itself, or such an adopted orphan; never a pid that is owned elsewhere
(the health-check commands' Popen objects, `owned_elsewhere`). `sweep()` finds adopted zombies
the wait could not name (behind an owned zombie) in the master's list of children.

Cgroup mode: W is born in the zygote's cgroup, so the zygote sits in the master's nursery and
moves along with the master when it steps on (`child/scope.py`, `Companion`). `MCTL_NO_ZYGOTE=1`
turns all of this off (no zygote, no subreaper: every fork-path run forks from the master).

Runs in the master (the client half) and in the zygote; imports only the standard library and
`mastercontrol.child` (never sqlite3, `mastercontrol.store` or `mastercontrol.daemon`).
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import pickle
import select
import signal
import socket
import time
from collections.abc import Callable, Collection, Iterable

from mastercontrol.child.execspawn import ExecChild, spawn_child
from mastercontrol.child.spawn import (
    _ALL_SIGNALS,
    PR_SET_PDEATHSIG,
    ChildSpec,
    EnvironmentDelta,
    SpawnedChild,
    _child_main,
    _child_reset_signals,
    _prctl,
    _sigmask,
    delta_to,
    spawn,
    workload_env,
)
from mastercontrol.engine.exitstatus import CHILD_EXIT_SETUP_FAILED

log = logging.getLogger(__name__)

DISABLE_ENV = "MCTL_NO_ZYGOTE"  # "1": no zygote (like MCTL_NO_CGROUP)
COMM = b"mc-zygote"  # its name in ps/top
PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
REPLY_TIMEOUT = 3.0  # seconds the master waits for a pid (a fork of a small process: ~1 ms)
GO_TIMEOUT = 60.0  # seconds a W waits for the master's go before it gives up
RESTART_BACKOFF = 1.0  # seconds after a failure before a new zygote is forked ...
RESTART_BACKOFF_MAX = 60.0  # ... doubling while it keeps failing
MAX_MESSAGE = 1 << 18  # bytes of one request; a bigger one (huge params) forks in the master
GO = b"g"
# Standard-library modules workloads commonly import, imported once in the zygote (never user
# code: importing a workload's module runs it). A module the zygote has is shared by every
# run; one it lacks is imported by each run into pages of its own: `datetime` alone is ~0.9 MiB
# per run of examples.agents.hello_agent (bench/fork_pages.py). Kept short: each one also
# makes the interpreter's shared tables bigger, and a run that imports none of them copies a
# little more of those (~0.06 MiB per run with this list, measured).
PRELOAD = ("datetime", "json", "pathlib", "select", "subprocess")

Spawned = SpawnedChild | ExecChild


class ZygoteFailed(Exception):
    """The zygote did not start the run: the master forks it itself."""


class _TooBig(Exception):
    """A request the zygote's socket cannot take (huge params): that run forks in the master;
    the zygote is fine."""


def disabled(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    return environ.get(DISABLE_ENV, "") not in ("", "0")


def start(owned_elsewhere: Callable[[], Collection[int]] = frozenset) -> Zygote | None:
    """Fork the zygote and make this process a child subreaper; None when MCTL_NO_ZYGOTE=1.
    A zygote that cannot be forked now is forked again at a later spawn."""
    if disabled():
        return None
    if _prctl()(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.warning("no zygote: prctl(PR_SET_CHILD_SUBREAPER) failed; runs fork from the master")
        return None
    zygote = Zygote(owned_elsewhere)
    try:
        zygote.fork()
    except OSError as exc:
        zygote.failed(f"cannot start the zygote: {exc}")
    return zygote


class Zygote:
    """The master's end of the zygote: spawns, failure and fallback, reaping what it owns."""

    def __init__(self, owned_elsewhere: Callable[[], Collection[int]] = frozenset) -> None:
        self.owned_elsewhere = owned_elsewhere
        self.pid: int | None = None
        self.sock: socket.socket | None = None
        self._seq = 0
        self._retry_at = 0.0  # monotonic: no new zygote before this
        self._backoff = RESTART_BACKOFF
        self._failures = 0  # in a row; logged at the first only
        self.spawned = 0  # runs the zygote started (tests and `ping` read it)
        self.fallbacks = 0  # runs forked by the master because the zygote failed

    # ------------------------------------------------------------------ the master's spawner

    def spawner(self, spec: ChildSpec, close_fds: Iterable[int] = ()) -> Spawned:
        """The master's spawner: `command:` runs on the posix_spawn fast path where it applies
        (child/execspawn.py `spawn_child`), every other run through the zygote, else forked by
        the master."""
        return spawn_child(spec, close_fds, fork=self._fork)

    def _fork(self, spec: ChildSpec, close_fds: Iterable[int]) -> Spawned:
        """A fork-path run: through the zygote, else forked by the master."""
        if self.sock is None and time.monotonic() >= self._retry_at:
            try:
                self.fork()
            except OSError as exc:
                self.failed(f"cannot start the zygote: {exc}")
        if self.sock is not None:
            try:
                return self.spawn(spec)
            except ZygoteFailed as exc:
                self.failed(str(exc))
            except _TooBig:
                pass
        self.fallbacks += 1
        return spawn(spec, close_fds)

    def spawn(self, spec: ChildSpec) -> ExecChild:
        """Have the zygote start `spec`'s run; the master is its parent when this returns.
        Raises ZygoteFailed (nothing runs: a W that was forked gets EOF on its go pipe) or
        OSError for a pipe the master cannot make (the run's spawn_failed)."""
        sock = self.sock
        assert sock is not None
        read_fd, write_fd = os.pipe()  # the log pipe; both close-on-exec in the master
        go_r, go_w = os.pipe()
        try:
            os.set_blocking(read_fd, False)
            self._seq += 1
            payload = pickle.dumps((self._seq, spec, workload_env(spec)), pickle.HIGHEST_PROTOCOL)
            if len(payload) > MAX_MESSAGE:
                raise _TooBig(f"{len(payload)} bytes")
            try:
                socket.send_fds(sock, [payload], [write_fd, go_r])
            except OSError as exc:
                raise ZygoteFailed(f"zygote request failed: {exc}") from None
            finally:
                os.close(write_fd)  # only W may hold the write end, or the master never sees EOF
                os.close(go_r)
            pid = self._reply(sock, self._seq)
            os.write(go_w, GO)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(go_w)
        self.spawned += 1
        self._failures, self._backoff = 0, RESTART_BACKOFF
        return ExecChild(pid=pid, log_fd=read_fd)

    def _reply(self, sock: socket.socket, seq: int) -> int:
        try:
            data = sock.recv(4096)  # the socket's timeout is REPLY_TIMEOUT
        except TimeoutError:
            raise ZygoteFailed(f"no reply from the zygote within {REPLY_TIMEOUT:g}s") from None
        except OSError as exc:
            raise ZygoteFailed(f"zygote reply failed: {exc}") from None
        if not data:
            raise ZygoteFailed("the zygote is gone")
        got, pid, error = pickle.loads(data)
        if got != seq:
            raise ZygoteFailed(f"zygote reply {got} to request {seq}")
        if error:
            raise ZygoteFailed(f"the zygote cannot start the run: {error}")
        return int(pid)

    def failed(self, why: str) -> None:
        """Drop the zygote (killed, with whatever it is forking), fork runs in the master until
        RESTART_BACKOFF has passed; logged at the first failure in a row."""
        self._failures += 1
        if self._failures == 1:
            log.warning("%s: forking runs from the master until a new zygote is up", why)
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, RESTART_BACKOFF_MAX)
        self.close(kill=True)

    # ------------------------------------------------------------------ starting it

    def fork(self) -> None:
        """Fork a new zygote from this process (the master). Raises OSError."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        master = os.getpid()
        old_mask = _sigmask(signal.SIG_BLOCK, _ALL_SIGNALS)  # the zygote keeps them blocked
        try:
            for s in (ours, theirs):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, MAX_MESSAGE)
            gc.freeze()  # as for any fork of the master (child/spawn.py, start_child)
            try:
                pid = os.fork()
            finally:
                gc.unfreeze()
            if pid == 0:
                try:
                    ours.close()
                    _serve(theirs, master)
                finally:
                    os._exit(0)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
            _sigmask(signal.SIG_SETMASK, old_mask)
        ours.settimeout(REPLY_TIMEOUT)
        self.pid, self.sock = pid, ours
        log.debug("zygote started, pid %d", pid)

    def close(self, kill: bool = False) -> None:
        """Let the zygote go (it exits at EOF); `kill`: SIGKILL it and its process group (an
        I or a W still waiting for its go). Its zombie is reaped as an adopted one."""
        sock, self.sock = self.sock, None
        pid, self.pid = self.pid, None
        if sock is not None:
            sock.close()
        if kill and pid is not None:
            for send in (os.killpg, os.kill):
                try:
                    send(pid, signal.SIGKILL)
                except OSError:
                    pass

    # ------------------------------------------------------------------ cgroup companion

    def pids(self) -> list[int]:
        """Processes that must sit in the master's nursery cgroup (child/scope.py)."""
        return [self.pid] if self.pid is not None else []

    def lost(self, pid: int, why: str) -> None:
        """It could not follow the master into its new nursery: runs must not be born where
        it is (a run's cgroup): drop it."""
        if pid == self.pid:
            self.failed(f"the zygote cannot follow the master: {why}")

    # ------------------------------------------------------------------ reaping

    def reap_other(self, pid: int) -> bool:
        """The master's reaper found `pid` exited and it is no workload's: reap it if it is the
        zygote or an orphan a run left (adopted: the master is a subreaper). False: it is owned
        elsewhere (a health-check command's Popen reaps it)."""
        if pid in self.owned_elsewhere():
            return False
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True  # not ours (any more): nothing to reap
        if got == 0:
            return False  # not exited after all
        if pid == self.pid:
            self.pid = None  # reaped: its pid may be reused, never signal it again
            code = os.waitstatus_to_exitcode(status)
            self.failed(f"the zygote (pid {pid}) exited ({code})")
        else:
            log.debug(
                "reaped pid %d, an orphan a run left (%d)", pid, os.waitstatus_to_exitcode(status)
            )
        return True

    def sweep(self, workload_pids: Collection[int]) -> int:
        """Reap every adopted zombie among the master's children (those the wait could not
        name); `workload_pids` are left alone. Returns how many were reaped."""
        reaped = 0
        for pid in _children():
            if pid not in workload_pids and _is_zombie(pid) and self.reap_other(pid):
                reaped += 1
        return reaped


def _children() -> list[int]:
    """This process's children: /proc/self/task/<tid>/children (CONFIG_PROC_CHILDREN), else a
    scan of /proc for our ppid."""
    me = os.getpid()
    try:
        with open(f"/proc/self/task/{me}/children", "rb") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        pass
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _stat_fields(int(name))
            if stat is not None and stat[1] == str(me):
                found.append(int(name))
    return found


def _stat_fields(pid: int) -> list[str] | None:
    """(state, ppid) from /proc/<pid>/stat, None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    return [fields[0].decode(), fields[1].decode()] if len(fields) > 1 else None


def _is_zombie(pid: int) -> bool:
    stat = _stat_fields(pid)
    return stat is not None and stat[0] == "Z"


# ---------------------------------------------------------------------- the zygote process


def _serve(sock: socket.socket, master: int) -> None:
    """The zygote's life: serve spawn requests until the master is gone (EOF or PDEATHSIG)."""
    if _prctl()(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() != master:
        return
    # Its own process group: the master kills it together with an I or a W that waits for its
    # go (`Zygote.close`), and a Ctrl-C on the terminal is for the master only.
    os.setsid()
    _set_comm(COMM)
    # Once here, for every run: a Python workload's dispositions (a zygote forked from the
    # running master had its handlers); then everything blocked again until a run unblocks.
    _child_reset_signals(exec_follows=False)
    _sigmask(signal.SIG_BLOCK, _ALL_SIGNALS)
    keep = sock.fileno()
    os.closerange(3, keep)  # the keeper's pipe, the master's db, sockets, log pipes: not ours
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # a trimmed Python: that run imports it itself
            pass
    gc.collect()
    gc.freeze()  # as the master does for its forks: the children's collections walk nothing
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 2)
        except OSError:
            return
        if not msg:
            return  # the master closed its end
        seq, error, pid = 0, "", 0
        try:
            seq, spec, env = pickle.loads(msg)
            if len(fds) != 2:
                raise ValueError(f"expected 2 fds, got {len(fds)}")
            pid = _fork_run(spec, env, fds[0], fds[1], master)
        except Exception as exc:  # a bad request or a failed fork: the master falls back
            error = f"{type(exc).__name__}: {exc}"
        finally:
            for fd in fds:
                os.close(fd)
        try:
            sock.send(pickle.dumps((seq, pid, error)))
        except OSError:
            return


def _fork_run(spec: ChildSpec, env: dict[str, str], log_w: int, go_r: int, master: int) -> int:
    """Fork I, which forks W and exits; once I is reaped, W is the master's child."""
    delta = delta_to(env)  # against the zygote's own environment, here: not in every W
    pid_r, pid_w = os.pipe()
    gc.freeze()  # the request's objects too
    try:
        middle = os.fork()
        if middle == 0:
            try:
                os.close(pid_r)
                run = os.fork()
                if run == 0:
                    os.close(pid_w)
                    _run(spec, delta, log_w, go_r, master)
                os.write(pid_w, b"%d" % run)
            finally:
                os._exit(0)
    finally:
        os.close(pid_w)
    try:
        os.waitpid(middle, 0)
        data = os.read(pid_r, 32)
    finally:
        os.close(pid_r)
    if not data:
        raise OSError("the intermediate could not fork the run")
    return int(data)


def _run(spec: ChildSpec, delta: EnvironmentDelta, log_w: int, go_r: int, master: int) -> None:
    """In W: wait for the master's go (EOF: given up, exit without running anything), then the
    bootstrap every forked run has."""
    try:
        ready, _, _ = select.select([go_r], [], [], GO_TIMEOUT)
        go = os.read(go_r, 1) if ready else b""
    except OSError:
        go = b""
    if go != GO:
        os._exit(CHILD_EXIT_SETUP_FAILED)
    os.close(go_r)
    _set_comm(_MASTER_COMM)
    _child_main(spec, (), log_w, master, delta, signals_fresh=True)


def _set_comm(name: bytes) -> None:
    try:
        with open("/proc/self/comm", "wb") as f:
            f.write(name)
    except OSError:
        pass


def _read_comm() -> bytes:
    try:
        with open("/proc/self/comm", "rb") as f:
            return f.read().rstrip(b"\n")
    except OSError:
        return b"python3"


_MASTER_COMM = _read_comm()  # a run is named like the master, as a run it forked would be
