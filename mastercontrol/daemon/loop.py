"""The master loop: one thread, one selector, a fixed order of work per wake.

`MasterLoop.step()` sleeps in the selector until an fd is ready or the nearest timer is due —
there is no polling interval — and then works in a fixed order: signals -> reap -> child output
and health probes -> IPC -> timers, commit, then replies. It knows its event sources (signal
pipe, child output pipes, health probes, control server) only through the interface of
`mastercontrol.daemon.events`: it syncs their registrations with the selector and hands ready
fds back to them. Every timer goes through one `TimerTable`. It composes the master's parts
(Lifecycle, Supervisor, Monitor, Commands, ControlServer) and is the `Master` the IPC commands
see. Imports the stdlib and the package's own modules only.
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
from mastercontrol.child.group import SignalSender, killpg
from mastercontrol.config.internal import internal_workloads, is_internal
from mastercontrol.config.load import load_config_dir
from mastercontrol.config.model import ConfigSet, DaemonConfig, WorkloadConfig
from mastercontrol.daemon.commands import Commands
from mastercontrol.daemon.configpush import ConfigPush
from mastercontrol.daemon.control import ControlServer
from mastercontrol.daemon.degraded import StateGuard
from mastercontrol.daemon.events import EventSource
from mastercontrol.daemon.lifecycle import Lifecycle, Spawner
from mastercontrol.daemon.monitor import Monitor
from mastercontrol.daemon.output import Outputs
from mastercontrol.daemon.signals import SignalPipe
from mastercontrol.daemon.supervisor import Supervisor
from mastercontrol.daemon.systemd import Notifier
from mastercontrol.engine.clock import JUMP_CHECK_INTERVAL, Clock, JumpWatch
from mastercontrol.engine.timers import TimerHeap, TimerKey, TimerKind, TimerTable
from mastercontrol.errors import IPCError, StoreError
from mastercontrol.ipc.protocol import ErrorCode
from mastercontrol.store.identity import LostState
from mastercontrol.store.queries import Store

log = logging.getLogger(__name__)

K = TimerKind
HOUSEKEEPING_INTERVAL = 30.0  # reap check, history pruning
PRUNE_CATCH_UP = 1.0  # next housekeeping while history pruning is behind (one chunk per pass)
DB_CHECK_INTERVAL = 1.0  # a busy master looks for its state file at most this often (idle: 30 s)


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
        db_path: Path | None = None,
        lost_state: LostState | None = None,
        after_fork: Callable[[], None] = lambda: None,
        tidy: Callable[[], None] = lambda: None,
    ) -> None:
        """`after_fork`: the master forked a child that is not a run (a health-check command);
        `tidy`: housekeeping of the run scopes after each wake (both child/scope.py)."""
        store_dir = store_dir or log_dir
        self.config_dir = config_dir
        self.socket_path = socket_path
        self.log_dir = log_dir
        self.state_dir = store_dir  # the state DB's directory (config-previous/ lives there)
        self.store = store
        self.clock = clock
        self.daemon_config = daemon_config
        self.notifier = notifier or Notifier.from_environ({})
        self.load_config = load_config
        self.timers: TimerHeap[TimerKey] = TimerHeap()
        self.signals = SignalPipe()
        self.selector = selectors.DefaultSelector()
        self.outputs = Outputs(log_dir, self._unwatch)
        self.lifecycle = Lifecycle(
            store, clock, self.timers, self.outputs, spawner, send_signal, self.master_fds
        )
        self.supervisor = Supervisor(self.lifecycle)
        self.guard = StateGuard(self.lifecycle, db_path or store_dir / "state.db", lost_state)
        self._db_checked = clock.monotonic()
        self.monitor = Monitor(
            self.supervisor,
            clock,
            self.timers,
            [str(store_dir), str(log_dir)],
            daemon_config.daemon.sample_interval,
            after_fork,
        )
        self.tidy = tidy
        self.wakeups = 0  # loop iterations, for `ping` (an idle master should barely wake)
        config_push = ConfigPush(config_dir, self.state_dir, load_config)
        self.commands = Commands(self, config_push)
        self.control = ControlServer(
            socket_path,
            self.commands.dispatch,
            daemon_config.daemon.socket_group,
            daemon_config.daemon.read_group,
            unwatch=self._unwatch,
        )
        self.timer_table = TimerTable(
            {
                **self.lifecycle.timer_handlers(),
                K.HEALTH: self.monitor.on_health_timer,
                K.SAMPLE: self._on_sample,
                K.WATCHDOG: self._on_watchdog,
                K.HOUSEKEEPING: self._on_housekeeping,
                K.IPC_IDLE: self._on_ipc_idle,
                K.SHUTDOWN: self._on_shutdown_deadline,
            }
        )
        self.started_mono = clock.monotonic()
        self.started_wall = clock.wall()
        self.jumps = JumpWatch(clock)  # wall clock steps re-plan the schedules at once
        self.done = False
        self._internal_stopped = False  # shutdown: the internal services were told to stop
        self.config_problems: list[str] = []
        # fd -> (source, owner, events) as registered with the selector
        self._registered: dict[int, tuple[EventSource, object, int]] = {}

    # ------------------------------------------------------------------ lifecycle

    def master_fds(self) -> Iterable[int]:
        """Every fd the master holds that a child must not keep (children close them all)."""
        yield from self.signals.fds()
        yield from self.control.own_fds()
        yield from self.outputs.fds()
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
        with self.store.batch():
            self.lifecycle.boot(self.desired(configs))
            behind = self._prune_history()
        self.monitor.note_configs()
        now = self.clock.monotonic()
        wait = PRUNE_CATCH_UP if behind else HOUSEKEEPING_INTERVAL
        self.timers.schedule(TimerKey(K.HOUSEKEEPING), now + wait)
        self.timers.schedule(TimerKey(K.SAMPLE), now + min(1.0, self.monitor.interval))
        interval = self.notifier.watchdog_interval()
        if interval:
            self.timers.schedule(TimerKey(K.WATCHDOG), self.clock.monotonic() + interval)
        self.notifier.ready(self.status_line())
        log.info(
            "mastercontrold %s ready: %d workloads, pid %d",
            __version__,
            len(self.lifecycle.workloads),
            os.getpid(),
        )

    def run(self, configs: ConfigSet) -> None:
        """The daemon's life: start, step until stopped, close. A stop signal that lands
        after the loop has ended (while the store closes and the process exits) asks for what
        is already under way: it is ignored, not the default death by signal (exit -15)."""
        self.start(configs)
        try:
            while not self.done:
                self.step()
        finally:
            self.close(stop_signals=signal.SIG_IGN)

    def close(self, stop_signals: signal.Handlers = signal.SIG_DFL) -> None:
        self.monitor.close()
        self.lifecycle.kill_all()
        self.outputs.close()
        self.control.close()
        self.selector.close()
        self.signals.uninstall(stop_signals)
        self.signals.close()

    # ------------------------------------------------------------------ one step

    def step(self, max_wait: float | None = None) -> None:
        """Wait for the next event or deadline, then handle everything that is ready."""
        self._sync_registrations()
        timeout = self.timers.timeout(self.clock.monotonic())
        if max_wait is not None:
            timeout = max_wait if timeout is None else min(timeout, max_wait)
        if (timeout is None or timeout > JUMP_CHECK_INTERVAL) and self.lifecycle.schedules_armed():
            # A cron tick waits on a monotonic timer computed from the wall clock: look at the
            # wall clock at least every JUMP_CHECK_INTERVAL, so a step re-plans within a second.
            # (Asked only when the sleep would be longer: a busy loop never scans the agents.)
            timeout = JUMP_CHECK_INTERVAL
        ready = self.selector.select(timeout)
        self.wakeups += 1
        try:
            with self.store.batch():  # one commit (one fsync) per wake
                self._handle(ready)
        except StoreError as exc:
            self.lifecycle.history.failed("state database commit failed", exc)
        now = self.clock.monotonic()
        if now - self._db_checked >= DB_CHECK_INTERVAL:
            # Outside the wake's batch: a restore copies the committed database whole.
            self._db_checked = now
            self.guard.check_file(self.clock.wall())
        self.control.send_replies()  # only now: what a reply acknowledges is on disk
        self.tidy()  # e.g. remove the cgroup of a run reaped in this wake: off the restart path

    def _handle(self, ready: list[tuple[selectors.SelectorKey, int]]) -> None:
        """Everything one wake brings, in the fixed order: signals, reap, fds, timers."""
        by_source: dict[int, list[tuple[object, int]]] = {}
        for key, events in ready:
            source, owner = key.data
            by_source.setdefault(id(source), []).append((owner, events))

        def dispatch(source: EventSource, now: float) -> None:
            for owner, events in by_source.get(id(source), ()):
                source.on_ready(owner, events, now)

        dispatch(self.signals, self.clock.monotonic())
        reap = False
        for signum in self.signals.take():
            reap |= self._on_signal(signum)
        if reap:
            self.lifecycle.reap()
            self.monitor.on_sigchld()
        now = self.clock.monotonic()
        dispatch(self.outputs, now)  # child output
        dispatch(self.monitor, now)  # health probes
        dispatch(self.control, now)  # IPC: requests answered, replies queued
        step = self.jumps.check()
        if step:
            self.lifecycle.clock_stepped(step)  # before the timers: they may be re-armed
        for timer in self.timers.pop_due(self.clock.monotonic()):
            self.timer_table.dispatch(timer)
        self._plan_ipc_expiry()
        self.monitor.sync_checks()
        if self.lifecycle.shutting_down:
            self._check_shutdown_done()

    def _sources(self) -> tuple[EventSource, ...]:
        return (self.signals, self.outputs, self.monitor, self.control)

    def _sync_registrations(self) -> None:
        """Make the selector watch exactly the fds the sources want now (cheap set arithmetic).

        Each fd comes with the object that owns it. A closed fd drops out of epoll by itself,
        and its number is soon reused (a new connection, the next run's pipe): comparing owners,
        not numbers, is what registers the newcomer instead of trusting a dead registration.
        """
        want: dict[int, tuple[EventSource, object, int]] = {}
        for source in self._sources():
            for fd, reg in source.registrations().items():
                want[fd] = (source, reg.owner, reg.events)
        for fd, (_source, owner, _events) in list(self._registered.items()):
            entry = want.get(fd)
            if entry is None or entry[1] is not owner:
                try:
                    self.selector.unregister(fd)
                except (KeyError, ValueError):
                    pass
                del self._registered[fd]
        for fd, entry in want.items():
            source, owner, events = entry
            old = self._registered.get(fd)
            if old is None:
                self.selector.register(fd, events, (source, owner))
            elif old[2] != events:
                self.selector.modify(fd, events, (source, owner))
            self._registered[fd] = entry

    def _unwatch(self, fd: int) -> None:
        """A source is about to close `fd`: drop it from the selector while it is still open."""
        if self._registered.pop(fd, None) is not None:
            try:
                self.selector.unregister(fd)
            except (KeyError, ValueError):
                pass

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

    def _on_housekeeping(self, _: str) -> None:
        now = self.clock.monotonic()
        self.lifecycle.reap_all()  # a lost SIGCHLD can delay an exit, never hide it
        if self.notifier.enabled:
            self.notifier.status(self.status_line())  # `systemctl status` stays current
        behind = self._prune_history()
        wait = PRUNE_CATCH_UP if behind else HOUSEKEEPING_INTERVAL
        self.timers.schedule(TimerKey(K.HOUSEKEEPING), now + wait)

    def _on_ipc_idle(self, _: str) -> None:
        self.control.expire(self.clock.monotonic())

    def _plan_ipc_expiry(self) -> None:
        """Keep the IPC_IDLE timer at the control server's next idle deadline (or none)."""
        key = TimerKey(K.IPC_IDLE)
        deadline = self.control.next_expiry()
        if deadline is None:
            self.timers.cancel(key)
        elif self.timers.deadline(key) != deadline:
            self.timers.schedule(key, deadline)

    def _on_watchdog(self, _: str) -> None:
        self.notifier.watchdog()
        interval = self.notifier.watchdog_interval()
        if interval:
            self.timers.schedule(TimerKey(K.WATCHDOG), self.clock.monotonic() + interval)

    def _on_sample(self, _: str) -> None:
        self.monitor.sample()
        interval = self.daemon_config.daemon.sample_interval
        self.timers.schedule(TimerKey(K.SAMPLE), self.clock.monotonic() + interval)

    def _on_shutdown_deadline(self, _: str) -> None:
        log.warning("shutdown deadline reached, killing what is left")
        self.lifecycle.kill_all()
        self.done = True

    def _prune_history(self) -> bool:
        """One bounded chunk of history pruning (daemon.history_*); True while more is due."""
        d = self.daemon_config.daemon
        try:
            pruned = self.store.prune(
                self.clock.wall(), d.history_days * 86400.0, d.history_max_runs
            )
        except StoreError as exc:
            self.lifecycle.history.failed("pruning the run history failed", exc)
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
        desired = self.desired(configs)
        if dry_run:
            return {"dry_run": True, "plan": self.supervisor.plan(desired).to_dict()}
        for warning in configs.warnings:
            log.warning("config: %s", warning)
        self.notifier.reloading()
        plan = self.supervisor.apply(desired)
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

    def desired(self, configs: ConfigSet) -> dict[str, WorkloadConfig]:
        """The workloads to run: the config dir's, plus the internal services daemon.yaml asks
        for (to the planner they are ordinary workloads: a changed section digest restarts
        them). Their modules are named, never imported here: the child imports them."""
        internal = internal_workloads(
            configs.daemon,
            config_dir=self.config_dir,
            socket_path=self.socket_path,
            state_dir=self.state_dir,
            log_dir=self.log_dir,
        )
        return {**configs.workloads, **internal}

    def begin_shutdown(self) -> None:
        if self.lifecycle.shutting_down:
            return
        self.notifier.stopping()
        # User workloads first; the internal services (the API, heartbeats) last, once no user
        # workload is left (_check_shutdown_done), so the API can report the shutdown.
        self.lifecycle.stop_all(lambda w: not is_internal(w.name))
        limit = self.daemon_config.daemon.shutdown_timeout
        self.timers.schedule(TimerKey(K.SHUTDOWN), self.clock.monotonic() + limit)
        self._check_shutdown_done()

    def _check_shutdown_done(self) -> None:
        life = self.lifecycle
        if not self._internal_stopped and not any(
            w.process is not None for w in life.workloads.values() if not is_internal(w.name)
        ):
            self._internal_stopped = True
            life.stop_all(lambda w: is_internal(w.name))
        if life.active_count() == 0:
            self.done = True

    def status_line(self) -> str:
        counts: dict[str, int] = {}
        for w in self.supervisor.workloads.values():
            counts[w.state.value] = counts.get(w.state.value, 0) + 1
        parts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
        line = f"{len(self.supervisor.workloads)} workloads" + (f": {parts}" if parts else "")
        return self.guard.status_prefix() + line

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
            "degraded": self.guard.view(),
            "shutting_down": self.lifecycle.shutting_down,
            "time": self.clock.wall(),
            "wakeups": self.wakeups,
            "system": self.monitor.system,
        }
