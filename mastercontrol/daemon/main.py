"""mastercontrold: the daemon's entry point — options, paths, logging, lock, then the loop.

Runs in the foreground (systemd style). SIGTERM/SIGINT stop it gracefully, SIGHUP reloads the
config. Exit codes: 0 after a clean stop, 75 when another daemon holds the socket's or the
state database's lock, 78 for an unusable configuration or paths (a symlink planted where a lock
file belongs included), 70 for an internal error. Imports the stdlib and the package.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

from mastercontrol import __version__
from mastercontrol.child import cgroup
from mastercontrol.child import zygote as zygotes
from mastercontrol.child.execspawn import spawn_child
from mastercontrol.child.scope import RunScopes, sweep_dead
from mastercontrol.child.zygote import Zygote
from mastercontrol.config.load import DAEMON_FILE, load_config_dir
from mastercontrol.config.paths import DAEMON_LOG_NAME, add_path_options, paths_from_args
from mastercontrol.config.secrets import token_warnings
from mastercontrol.daemon import dirs
from mastercontrol.daemon.healthcheck import command_pids
from mastercontrol.daemon.keeper import Keeper
from mastercontrol.daemon.keeper import start as start_keeper
from mastercontrol.daemon.lock import DaemonLock
from mastercontrol.daemon.loop import MasterLoop
from mastercontrol.daemon.systemd import Notifier
from mastercontrol.engine.clock import SystemClock
from mastercontrol.errors import EX_CONFIG, EX_SOFTWARE, EX_TEMPFAIL, DaemonLocked, StoreError
from mastercontrol.logfile import LogWriterHandler
from mastercontrol.store import identity
from mastercontrol.store.open import open_store

log = logging.getLogger("mastercontrol")

DAEMON_LOG = f"{DAEMON_LOG_NAME}.log"
STARTUP_BLOCKED = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
CGROUPS = ".cgroups"  # beside the state DB: the start ids whose cgroups may be left (scope.py)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mastercontrold",
        description="Master Control daemon: supervises the workloads of this device.",
        epilog="Environment: MCTL_CONFIG_DIR, MCTL_DB_PATH, MCTL_SOCKET_PATH, MCTL_LOG_DIR.",
    )
    add_path_options(parser)
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), help="daemon log verbosity"
    )
    parser.add_argument(
        "--accept-lost-state",
        action="store_true",
        help="the state database was lost (deleted, corrupt, replaced): accept the one there "
        "is now, so held counted workloads start with the counts it has",
    )
    parser.add_argument(
        "--no-stderr-log",
        action="store_true",
        help="log to the daemon log only, not also to stderr (mastercontrol-ctl up --detach)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def setup_logging(
    log_dir: Path, level: str, max_bytes: int, backups: int, to_stderr: bool = True
) -> None:
    """The daemon log (rotated like a workload's, see logfile.LogWriter), and a copy of every
    line on stderr (the journal under systemd) unless `to_stderr` is false. When the daemon
    log cannot be opened now, stderr gets the lines whatever `to_stderr` says."""
    root = logging.getLogger("mastercontrol")
    root.setLevel(getattr(logging, level.upper()))
    # No format of the daemon (nor of its internal services) shows a thread or process name
    # or pid: a record need not look them up (multiprocessing's current process among them),
    # one fewer cost on every exit's log line.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = LogWriterHandler(log_dir / DAEMON_LOG, max_bytes, backups)
    writer = handler.writer
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    problem = None
    if not writer.usable():
        problem = writer.last_error
        to_stderr = True
    if to_stderr:
        stderr = logging.StreamHandler(sys.stderr)
        stderr.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(stderr)
    if problem:
        root.warning("cannot write %s (logging to stderr only until it can)", problem)


def main(
    argv: list[str] | None = None,
    keeper: Keeper | None = None,
    zygote: Zygote | None = None,
    zygote_started: bool = False,
) -> int:
    args = build_parser().parse_args(argv)
    # Someone must outlive the master to kill what its runs leave (daemon/keeper.py); started
    # early by daemon/entry.py, or here when run as `python -m mastercontrol.daemon.main`.
    keeper_end = keeper if keeper is not None else start_keeper()
    # The Python runs' fork server (child/zygote.py), likewise; None: MCTL_NO_ZYGOTE=1.
    forks = zygote if zygote_started else zygotes.start()
    # Until the loop's handlers are installed, a SIGTERM would kill the daemon mid-startup:
    # hold the stop and reload signals back; the loop unblocks them and then sees them.
    signal.pthread_sigmask(signal.SIG_BLOCK, STARTUP_BLOCKED)
    paths = paths_from_args(args)
    if not paths.config_dir.is_dir():
        print(f"mastercontrold: config dir {paths.config_dir} does not exist", file=sys.stderr)
        return EX_CONFIG
    configs = load_config_dir(paths.config_dir)
    settings = configs.daemon.daemon
    # Private before anything is created: 0600 files in private directories (see dirs.py).
    os.umask(dirs.daemon_umask(settings.socket_group))
    try:
        gid = dirs.group_id(settings.socket_group)
        dirs.group_id(settings.read_group, "daemon.read_group")
        try:
            dirs.prepare(paths.log_dir, "log dir", gid, setgid=True)
        except OSError:
            pass  # an unusable log dir does not stop supervision: setup_logging says so
        dirs.prepare(paths.db_path.parent, "state dir", gid, setgid=True)
        dirs.prepare(
            paths.socket_path.parent, "socket dir", gid, traversable=bool(settings.read_group)
        )
    except (dirs.UnsafeDirectory, OSError) as exc:
        print(f"mastercontrold: {exc}", file=sys.stderr)
        return EX_CONFIG
    setup_logging(
        paths.log_dir,
        args.log_level or settings.log_level,
        settings.log_max_bytes,
        settings.log_backups,
        to_stderr=not args.no_stderr_log,
    )
    keeper_end.tell("log", str(paths.log_dir / DAEMON_LOG))
    for warning in token_warnings(configs.daemon, paths.config_dir / DAEMON_FILE):
        log.warning("%s", warning)
    for warning in configs.warnings:
        log.warning("config: %s", warning)
    notifier = Notifier.from_environ()  # also strips NOTIFY_SOCKET & co. from what children see
    # One daemon per socket and one per state database: a second daemon on the same DB with
    # another socket would declare the first one's runs dead and repeat counted runs.
    locks = [
        DaemonLock(paths.socket_path, "socket"),
        DaemonLock(paths.db_path, "state database"),
    ]
    held: list[DaemonLock] = []
    for lock in locks:
        try:
            lock.acquire()
        except DaemonLocked as exc:
            log.error("%s", exc)
            _release(held)
            return EX_TEMPFAIL
        except OSError as exc:
            log.error("cannot create the lock %s: %s", lock.path, exc.strerror or exc)
            _release(held)
            return EX_CONFIG
        held.append(lock)
    try:
        clock = SystemClock()
        existed = paths.db_path.exists()
        try:
            store, note = open_store(paths.db_path, clock.wall())
        except (StoreError, OSError) as exc:
            log.error("cannot open state database %s: %s", paths.db_path, exc)
            return EX_CONFIG
        # A note (a corrupt file moved aside) becomes the lost state's reason: the loop's
        # StateGuard logs it, once, as the DEGRADED line.
        try:
            lost = identity.verify(store, paths.db_path, existed, note, clock.wall())
            if lost is not None and args.accept_lost_state:
                identity.accept(store, paths.db_path)
                log.warning(
                    "lost state accepted (--accept-lost-state): counted workloads go on with "
                    "the counts the database has now"
                )
                lost = None
        except StoreError as exc:
            if note:
                log.error("%s", note)
            log.error("%s", exc)
            store.close()
            return EX_CONFIG
        scopes = run_scopes(
            keeper_end, paths.db_path.with_name(paths.db_path.name + CGROUPS), forks
        )
        try:
            loop = MasterLoop(
                config_dir=paths.config_dir,
                socket_path=paths.socket_path,
                log_dir=paths.log_dir,
                store=store,
                clock=clock,
                spawner=scopes.spawner(spawn_child if forks is None else forks.spawner),
                send_signal=scopes.signal,
                after_fork=scopes.after_fork,
                tidy=scopes.tidy,
                daemon_config=configs.daemon,
                notifier=notifier,
                store_dir=paths.db_path.parent,
                db_path=paths.db_path,
                lost_state=lost,
            )
        except (OSError, KeyError) as exc:  # KeyError: daemon.socket_group names no group
            log.error("cannot create the control socket %s: %s", paths.socket_path, exc)
            store.close()
            return EX_CONFIG
        if forks is not None:
            forks.owned_elsewhere = command_pids  # the health checks' Popen reaps those
            loop.lifecycle.reap_other = forks.reap_other
            loop.lifecycle.sweep_others = forks.sweep
        log.info(
            "config %s, state %s, socket %s, logs %s",
            paths.config_dir,
            paths.db_path,
            paths.socket_path,
            paths.log_dir,
        )
        try:
            loop.run(configs)
        finally:
            scopes.close()
            store.close()
            if forks is not None:
                forks.close()
        log.info("mastercontrold stopped")
        return 0
    except Exception:
        log.exception("mastercontrold failed")
        return EX_SOFTWARE
    finally:
        _release(held)


def run_scopes(keeper_end: Keeper, record: Path, zygote: Zygote | None = None) -> RunScopes:
    """Per-run cgroups where this daemon may create them, else process groups and markers.
    First the cgroups dead daemons of this state database left go (`record` names them). The
    zygote moves along with the master (child/scope.py, `Companion`)."""
    base, why = cgroup.usable_base()
    sweep_dead(record, keeper_end.start_id, base)
    if base is not None:
        keeper_end.tell("cgroup", str(base))
        log.info("each run gets a cgroup under %s", base)
    else:
        log.info("no per-run cgroups (%s): runs are tracked by process group and marker", why)
    return RunScopes(keeper_end.start_id, base, zygote)


def _release(locks: list[DaemonLock]) -> None:
    for lock in reversed(locks):
        lock.release()


def leave(code: int) -> NoReturn:
    """End the daemon process with `code` now, without the interpreter's teardown.

    Called once `main` has returned, so everything an exit must do is done: the loop stopped
    every child, the state database and the zygote are closed, the locks released, and every
    log line is written (both handlers write each record at once). What is left is tearing
    down the ~25 MiB of objects the master holds, one by one: 50-130 ms of CPU after the last
    child (strace of `down`: nothing but that between the last log line and exit_group), which
    the operator's `down` waited for. The kernel frees the memory in one go instead. Nothing
    here registers an atexit hook; multiprocessing's joins no child (there is none left)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed, or a full pipe: nothing more to say there
            pass
    os._exit(code)


if __name__ == "__main__":
    leave(main())
