"""The master loop: one thread, one selector, a fixed order of work per wake.

`MasterLoop.step()` sleeps in the selector until an fd is ready or the nearest timer is due —
there is no polling interval — and then works in a fixed order: signals -> reap -> child output
-> IPC -> timers. Event sources: the signal wakeup pipe (SIGCHLD included), the IPC listening
socket and its connections, each child's output pipe, and the TimerHeap. All workload state is
the Supervisor's; IPC requests reach it only through `dispatch`. Imports the stdlib and the
package's own modules only.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mastercontrol import __version__
from mastercontrol.config.load import load_config_dir
from mastercontrol.config.model import ConfigSet, DaemonConfig
from mastercontrol.daemon.commands import Commands
from mastercontrol.daemon.control import ControlServer
from mastercontrol.daemon.lifecycle import SignalSender, Spawner, killpg
from mastercontrol.daemon.monitor import Monitor
from mastercontrol.daemon.signals import SignalPipe
from mastercontrol.daemon.supervisor import Supervisor
from mastercontrol.daemon.systemd import Notifier
from mastercontrol.engine.clock import Clock
from mastercontrol.engine.timers import TimerHeap
from mastercontrol.errors import IPCError, StoreError
from mastercontrol.ipc.protocol import ErrorCode
from mastercontrol.store.queries import Store

log = logging.getLogger("mastercontrol.loop")

HOUSEKEEPING_INTERVAL = 30.0  # reap check, IPC idle expiry, history pruning
PRUNE_CATCH_UP = 1.0  # next housekeeping while history pruning is behind (one chunk per pass)


class MasterLoop:
    def __init__(
        self,
        config_dir: Path,
        socket_path: Path,
        log_dir: Path,
        store: Store,
        clock: Clock,
        spawner: Spawner,
        daemon_config: DaemonConfig,
        notifier: Notifier | None = None,
        send_signal: SignalSender = killpg,
        load_config: Callable[[Path], ConfigSet] = load_config_dir,
        store_dir: Path | None = None,
    ) -> None:
        store_dir = store_dir or log_dir
        self.config_dir = config_dir
        self.log_dir = log_dir
        self.state_dir = store_dir  # the state DB's directory (config-previous/ lives there)
        self.clock = clock
        self.daemon_config = daemon_config
        self.notifier = notifier or Notifier.from_environ({})
        self.load_config = load_config
        self.timers: TimerHeap[tuple[str, str]] = TimerHeap()
        self.signals = SignalPipe()
        self.selector = selectors.DefaultSelector()
        self.supervisor = Supervisor(
            store, clock, self.timers, log_dir, spawner, send_signal, self.master_fds
        )
        self.monitor = Monitor(
            self.supervisor,
            [str(store_dir), str(log_dir)],
            daemon_config.daemon.sample_interval,
        )
        self.wakeups = 0  # loop iterations, for `ping` (an idle master should barely wake)
        self.commands = Commands(self)
        self.control = ControlServer(
            socket_path, self.commands.dispatch, daemon_config.daemon.socket_group
        )
        self.started_mono = clock.monotonic()
        self.started_wall = clock.wall()
        self.done = False
        self.exit_deadline: float | None = None
        self.config_problems: list[str] = []
        # fd -> (kind, owning object, events)
        self._registered: dict[int, tuple[str, object, int]] = {}

    # ------------------------------------------------------------------ lifecycle

    def master_fds(self) -> Iterable[int]:
        """Every fd the master holds that a child must not keep (children close them all)."""
        yield from self.signals.fds()
        yield from self.control.own_fds()
        yield from self.supervisor.outputs.pipes
        try:
            yield self.selector.fileno()  # type: ignore[attr-defined,unused-ignore]
        except (AttributeError, ValueError):
            pass

    def start(self, configs: ConfigSet) -> None:
        """Install signal handlers, adopt the config and start the workloads."""
        self.signals.install()
        # mastercontrold's main held these back until now: deliver them to our handlers.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
        self.config_problems = list(configs.problems)
        for problem in configs.problems:
            log.error("config: %s", problem)
        with self.supervisor.store.batch():
            self.supervisor.boot(dict(configs.workloads))
            behind = self._prune_history()
        self.monitor.note_configs()
        now = self.clock.monotonic()
        self.timers.schedule(
            ("housekeeping", ""), now + (PRUNE_CATCH_UP if behind else HOUSEKEEPING_INTERVAL)
        )
        self.timers.schedule(("sample", ""), now + min(1.0, self.monitor.interval))
        interval = self.notifier.watchdog_interval()
        if interval:
            self.timers.schedule(("watchdog", ""), self.clock.monotonic() + interval)
        self.notifier.ready(self.status_line())
        log.info(
            "mastercontrold %s ready: %d workloads, pid %d",
            __version__,
            len(self.supervisor.workloads),
            os.getpid(),
        )

    def run(self, configs: ConfigSet) -> None:
        self.start(configs)
        try:
            while not self.done:
                self.step()
        finally:
            self.close()

    def close(self) -> None:
        self.monitor.close()
        self.supervisor.kill_all()
        self.supervisor.outputs.close()
        self.control.close()
        self.selector.close()
        self.signals.uninstall()
        self.signals.close()

    # ------------------------------------------------------------------ one step

    def step(self, max_wait: float | None = None) -> None:
        """Wait for the next event or deadline, then handle everything that is ready."""
        self._sync_registrations()
        timeout = self.timers.timeout(self.clock.monotonic())
        if max_wait is not None:
            timeout = max_wait if timeout is None else min(timeout, max_wait)
        ready = self.selector.select(timeout)
        self.wakeups += 1
        try:
            with self.supervisor.store.batch():  # one commit (one fsync) per wake
                self._handle(ready)
        except StoreError as exc:
            log.error("state database commit failed, supervision continues: %s", exc)
        self.control.send_replies()  # only now: what a reply acknowledges is on disk

    def _handle(self, ready: list[tuple[selectors.SelectorKey, int]]) -> None:
        """Everything one wake brings, in the fixed order: signals, reap, fds, timers."""
        kinds = {key.fd: key.data for key, _ in ready}
        events = {key.fd: ev for key, ev in ready}

        reap = False
        for signum in self.signals.drain():
            reap |= self._on_signal(signum)
        if reap:
            self.supervisor.reap()
            self.monitor.on_sigchld()
        now = self.clock.monotonic()
        for fd, (kind, owner) in kinds.items():
            if kind == "pipe":
                self.supervisor.outputs.on_readable(fd)
            elif kind == "probe":
                self.monitor.on_probe_ready(owner)
            elif kind == "listener":
                self.control.accept(now)
            elif kind == "conn":
                if events[fd] & selectors.EVENT_READ:
                    self.control.on_readable(fd, now)
                if events[fd] & selectors.EVENT_WRITE:
                    self.control.on_writable(fd)
        for key in self.timers.pop_due(self.clock.monotonic()):
            self._on_timer(key)
        self.monitor.sync_checks()
        if self.supervisor.shutting_down:
            self._check_shutdown_done()

    def _sync_registrations(self) -> None:
        """Make the selector watch exactly the fds that exist now (cheap set arithmetic).

        Each fd comes with the object that owns it. A closed fd drops out of epoll by itself,
        and its number is soon reused (a new connection, the next run's pipe): comparing owners,
        not numbers, is what registers the newcomer instead of trusting a dead registration.
        """
        read = selectors.EVENT_READ
        want: dict[int, tuple[str, object, int]] = {
            self.signals.read_fd: ("signal", self.signals, read),
            self.control.fileno(): ("listener", self.control.listener, read),
        }
        writable = set(self.control.write_fds())
        for fd, conn in self.control.conns.items():
            if not conn.closing or conn.outbuf:
                events = read | (selectors.EVENT_WRITE if fd in writable else 0)
                want[fd] = ("conn", conn, events)
        for fd, pipe in self.supervisor.outputs.pipes.items():
            want[fd] = ("pipe", pipe, read)
        for fd, (probe, wants_write) in self.monitor.probe_fds().items():
            want[fd] = ("probe", probe, selectors.EVENT_WRITE if wants_write else read)
        for fd, (_kind, owner, _events) in list(self._registered.items()):
            if want.get(fd, (None, None, 0))[1] is not owner:
                try:
                    self.selector.unregister(fd)
                except (KeyError, ValueError):
                    pass
                del self._registered[fd]
        for fd, entry in want.items():
            kind, owner, events = entry
            old = self._registered.get(fd)
            if old is None:
                self.selector.register(fd, events, (kind, owner))
            elif old[2] != events:
                self.selector.modify(fd, events, (kind, owner))
            self._registered[fd] = entry

    # ------------------------------------------------------------------ handlers

    def _on_signal(self, signum: int) -> bool:
        """Act on one signal; True when children may have exited."""
        if signum in (signal.SIGTERM, signal.SIGINT):
            log.info("received %s, stopping", signal.Signals(signum).name)
            self.begin_shutdown()
        elif signum == signal.SIGHUP:
            log.info("received SIGHUP, reloading")
            try:
                self.reload(dry_run=False)
            except IPCError as exc:
                log.error("reload rejected: %s", exc)
        return signum == signal.SIGCHLD

    def _on_timer(self, key: tuple[str, str]) -> None:
        kind = key[0]
        if kind == "housekeeping":
            now = self.clock.monotonic()
            self.supervisor.reap_all()  # a lost SIGCHLD can delay an exit, never hide it
            self.control.expire(now)
            if self.notifier.enabled:
                self.notifier.status(self.status_line())  # `systemctl status` stays current
            behind = self._prune_history()
            self.timers.schedule(
                ("housekeeping", ""), now + (PRUNE_CATCH_UP if behind else HOUSEKEEPING_INTERVAL)
            )
        elif kind == "watchdog":
            self.notifier.watchdog()
            interval = self.notifier.watchdog_interval()
            if interval:
                self.timers.schedule(("watchdog", ""), self.clock.monotonic() + interval)
        elif kind == "sample":
            self.monitor.sample()
            interval = self.daemon_config.daemon.sample_interval
            self.timers.schedule(("sample", ""), self.clock.monotonic() + interval)
        elif kind == "health":
            self.monitor.on_health_timer(key[1])
        elif kind == "shutdown":
            log.warning("shutdown deadline reached, killing what is left")
            self.supervisor.kill_all()
            self.done = True
        else:
            self.supervisor.on_timer(key)

    def _prune_history(self) -> bool:
        """One bounded chunk of history pruning (daemon.history_*); True while more is due."""
        d = self.daemon_config.daemon
        try:
            pruned = self.supervisor.store.prune(
                self.clock.wall(), d.history_days * 86400.0, d.history_max_runs
            )
        except StoreError as exc:
            log.warning("pruning the run history failed, trying again later: %s", exc)
            return False
        if pruned.runs or pruned.events:
            log.debug("pruned %d runs and %d events", pruned.runs, pruned.events)
        return pruned.more

    # ------------------------------------------------------------------ operations

    def reload(self, dry_run: bool) -> dict[str, Any]:
        """Load the config dir again and apply the difference; reject it whole if invalid."""
        configs = self.load_config(self.config_dir)
        if configs.problems:
            raise IPCError(
                ErrorCode.INVALID_CONFIG,
                "config rejected, nothing changed:\n" + "\n".join(configs.problems),
                details={"problems": configs.problems},
            )
        if dry_run:
            return {"dry_run": True, "plan": self.supervisor.plan(configs.workloads).to_dict()}
        self.notifier.reloading()
        plan = self.supervisor.apply(dict(configs.workloads))
        self.monitor.note_configs()
        self.config_problems = []
        self.notifier.ready(self.status_line())
        log.info(
            "reload: added %s, removed %s, changed %s, unchanged %d",
            list(plan.add),
            list(plan.remove),
            list(plan.change),
            len(plan.unchanged),
        )
        return {"dry_run": False, "plan": plan.to_dict()}

    def begin_shutdown(self) -> None:
        if self.supervisor.shutting_down:
            return
        self.notifier.stopping()
        self.supervisor.shutdown()
        limit = self.daemon_config.daemon.shutdown_timeout
        self.timers.schedule(("shutdown", ""), self.clock.monotonic() + limit)
        self._check_shutdown_done()

    def _check_shutdown_done(self) -> None:
        if self.supervisor.active_count() == 0:
            self.done = True

    def status_line(self) -> str:
        counts: dict[str, int] = {}
        for w in self.supervisor.workloads.values():
            counts[w.state.value] = counts.get(w.state.value, 0) + 1
        parts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
        return f"{len(self.supervisor.workloads)} workloads" + (f": {parts}" if parts else "")

    def daemon_view(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "version": __version__,
            "started_at": self.started_wall,
            "uptime_seconds": round(self.clock.monotonic() - self.started_mono, 3),
            "config_dir": str(self.config_dir),
            "log_dir": str(self.log_dir),
            "workloads": len(self.supervisor.workloads),
            "status": self.status_line(),
            "config_problems": self.config_problems,
            "shutting_down": self.supervisor.shutting_down,
            "time": self.clock.wall(),
            "wakeups": self.wakeups,
            "system": self.monitor.system,
        }
