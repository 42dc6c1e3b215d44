"""Workload lifecycle: every workload's state, child and timers, event by event.

`Lifecycle` decides what happens on each event — a timer, a cron tick, a child's exit, a stop —
applies the transition through `History.transition` (which records it) and only then acts
(spawn, signal). It never selects, sleeps or reads sockets: the loop
(`mastercontrol.daemon.loop`) does, and the spawner, signal sender and clock are injected so
scripted histories can drive it in tests. Its public methods are the verbs the Supervisor
(operator commands, reload) and the loop (boot, reap, timers, shutdown) use; cron ticks are
`mastercontrol.daemon.ticks`. Imports the stdlib and the package's own modules only.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Collection, Iterable
from typing import Protocol, assert_never

from mastercontrol.child.group import SignalSender, killpg, sweep_interrupted
from mastercontrol.child.spawn import ChildSpec
from mastercontrol.config.model import RunMode, WorkloadConfig
from mastercontrol.daemon.history import History
from mastercontrol.daemon.output import Outputs
from mastercontrol.daemon.ticks import Ticks
from mastercontrol.daemon.workload import AfterStop, Workload
from mastercontrol.engine.backoff import Backoff
from mastercontrol.engine.clock import Clock
from mastercontrol.engine.exitstatus import ExitReason, ExitStatus, decode, is_failure
from mastercontrol.engine.states import ProcState, Trigger
from mastercontrol.engine.timers import (
    RUN_TIMERS,
    WORKLOAD_TIMERS,
    TimerHandler,
    TimerHeap,
    TimerKey,
    TimerKind,
)
from mastercontrol.errors import StoreError
from mastercontrol.store.queries import Store

log = logging.getLogger(__name__)

S = ProcState
T = Trigger
K = TimerKind
R = ExitReason
ORPHANS_PER_REAP = 65  # a wake reaps at most this many pids that are no workload's (+1 miss)


class Child(Protocol):
    """What the lifecycle needs of a spawned child (SpawnedChild, or a fake in tests)."""

    @property
    def pid(self) -> int: ...

    @property
    def log_fd(self) -> int | None: ...

    @property
    def exitcode(self) -> int | None: ...

    @property
    def started(self) -> int | None: ...  # start time of `pid` (/proc/<pid>/stat field 22)

    @property
    def scope(self) -> str | None: ...  # the run's cgroup or marker (child/scope.py)


Spawner = Callable[[ChildSpec, Iterable[int]], Child]


def _merge_after_stop(pending: AfterStop | None, new: AfterStop) -> AfterStop:
    """A second stop while one is in progress: a reload's decision (remove, replace) stands
    against a plain stop; otherwise the newer wish wins (a stop after a restart stays stopped)."""
    if new is AfterStop.STAY and pending in (AfterStop.REMOVE, AfterStop.REPLACE):
        return pending
    return new


class Lifecycle:
    """Owns every Workload; see the module docstring for who calls what."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        timers: TimerHeap[TimerKey],
        outputs: Outputs,
        spawner: Spawner,
        send_signal: SignalSender = killpg,
        master_fds: Callable[[], Iterable[int]] = lambda: (),
    ) -> None:
        self.store = store
        self.clock = clock
        self.timers = timers
        self.outputs = outputs
        self.spawner = spawner
        self.send_signal = send_signal
        self.master_fds = master_fds
        self.history = History(store, clock)
        self.workloads: dict[str, Workload] = {}
        self.ticks = Ticks(store, clock, timers, self.history, self.launch)
        self.shutting_down = False
        # Whether a workload taken on must wait for the operator (daemon/degraded.py sets it).
        self.hold: Callable[[WorkloadConfig], bool] = lambda cfg: False
        # With the zygote (child/zygote.py) the master is a child subreaper: the zygote and the
        # orphans runs leave are its children too. `reap_other(pid)` reaps such a pid (False:
        # someone else owns it, a health-check command); `sweep_others(workload pids)` reaps
        # the adopted zombies a wait could not name. Without a zygote neither has anything to do.
        self.reap_other: Callable[[int], bool] = lambda pid: False
        self.sweep_others: Callable[[Collection[int]], object] = lambda pids: None

    def timer_handlers(self) -> dict[TimerKind, TimerHandler]:
        """The per-workload timer kinds and their handlers, for the loop's one TimerTable."""
        return {
            K.TICK: self._on_tick,
            K.UP: self._on_up,
            K.RETRY: self._on_retry,
            K.TIMEOUT: self._on_timeout,
            K.KILL: self._on_kill,
        }

    # ------------------------------------------------------------------ boot and config

    def boot(self, configs: dict[str, WorkloadConfig]) -> None:
        """Take over after a (re)start: close runs a dead daemon left open, start everything."""
        now = self.clock.wall()
        orphans = self.history.save(self.store.close_orphan_runs, now) or []
        for name, run_id, *_ in orphans:
            log.warning("run %d of %s was interrupted when the daemon died", run_id, name)
        # Its leader died with the old master (PDEATHSIG) and the old keeper should have
        # killed the rest; whatever is left goes now, after an identity check of each pid.
        sweep_interrupted(
            [(pid, started, scope) for *_, pid, started, scope in orphans], self.send_signal
        )
        rows = self.store.workload_rows()
        for name in sorted(rows):
            if name not in configs:
                self.history.save(self.store.forget_workload, name)
        stopped = self.store.operator_stopped_names()
        for name in sorted(configs):
            self.add(configs[name], stopped)

    def add(self, cfg: WorkloadConfig, stopped: set[str] | None = None) -> Workload:
        """Take on a workload, with what the store remembers of it (run count, operator stop)."""
        if stopped is None:
            stopped = self.store.operator_stopped_names()
        w = Workload(cfg=cfg)
        self.workloads[cfg.name] = w
        self.outputs.add_workload(cfg.name, cfg.log_max_bytes, cfg.log_backups)
        w.runs = self.store.runs_started(cfg.name)
        w.operator_stopped = cfg.name in stopped
        self._restore_outcomes(w)
        w.held = self.hold(cfg)
        if self.history.kept_fatal(w):
            self._schedule_fatal_retry(w)
            return w
        self.history.save(
            self.store.record_transition, cfg.name, None, S.STOPPED, "loaded", self.clock.wall()
        )
        self.activate(w, catch_up=True)
        return w

    def _restore_outcomes(self, w: Workload) -> None:
        """What `list` and `status` show of past runs, from the store: the failed runs of this
        generation, the newest failure's reason, and how the last run ended."""
        outcomes = self.store.run_outcomes(w.name)
        failed = [o for o in outcomes if is_failure(o[0], o[1])]
        w.failed_runs = sum(o[2] for o in failed)
        w.last_failure = max(failed, key=lambda o: o[3])[0] if failed else None
        last = next(iter(self.store.recent_runs(w.name, limit=1)), None)
        if last is None or last.ended_at is None or last.reason is None:
            return
        try:
            reason = R(last.reason)
        except ValueError:  # written by a newer release: show nothing rather than guess
            return
        w.last_exit = ExitStatus(last.exit_code, last.signal, reason, last.text or reason.value)
        w.last_exit_wall = last.ended_at

    def activate(self, w: Workload, catch_up: bool = False) -> None:
        """Put an idle workload on its run mode's track (boot, reload, operator start of agents)."""
        cfg = w.cfg
        if not cfg.enabled or w.operator_stopped or w.held or self.shutting_down:
            return
        if cfg.run_mode is not RunMode.SCHEDULE:
            self.launch(w, T.START)  # forever: start; n_times: next run or COMPLETED
        else:
            self.ticks.arm(w, catch_up=catch_up)
            if w.state is not S.STARTING and w.state is not S.RUNNING:
                self.history.transition(w, T.WAIT_TICK, "waiting for the next tick")

    # ------------------------------------------------------------------ spawning

    def launch(self, w: Workload, trigger: Trigger) -> None:
        """Start one run: count it durably, then fork."""
        cfg = w.cfg
        if w.held:
            return  # the state database was lost: the operator decides (daemon/degraded.py)
        if cfg.run_mode is RunMode.N_TIMES and w.runs >= (cfg.max_runs or 0):
            if w.state is not S.COMPLETED:
                self.history.transition(w, T.ALL_RUNS_DONE, f"{w.runs} of {cfg.max_runs} runs done")
            return
        self.history.transition(w, trigger)  # -> STARTING
        now_wall, now_mono = self.clock.wall(), self.clock.monotonic()
        w.stop_reason, w.run_id, w.up = None, None, False
        counted = cfg.run_mode is RunMode.N_TIMES
        try:
            if counted:
                # Recorded before fork: a SIGKILLed daemon can neither lose nor repeat a run.
                w.run_id = self.store.begin_run(w.name, now_wall)
            w.runs += 1
            child = self.spawner(ChildSpec.from_config(cfg), self.master_fds())
        except (OSError, StoreError) as exc:
            if isinstance(exc, StoreError):
                self.history.failed(f"{w.name}: cannot record a run, not started", exc)
            else:
                log.error("%s: cannot start a run: %s", w.name, exc)
                if not counted:  # the attempt is a run of its own in the history
                    w.run_id = self.history.save(self.store.begin_run, w.name, now_wall, False)
            if w.run_id is not None:
                self.history.save(
                    self.store.end_run, w.run_id, now_wall, None, None, R.SPAWN_FAILED, str(exc)
                )
            self._count_outcome(w, R.SPAWN_FAILED, None)
            w.run_id = None
            self.history.transition(w, T.SPAWN_FAILED, str(exc))
            self._schedule_retry(w)
            return
        w.process, w.pid = child, child.pid
        w.started_mono, w.started_wall = now_mono, now_wall
        self._record_run_pid(w, child, now_wall)
        if child.log_fd is not None:
            self.outputs.attach(w.name, child.log_fd)
        if cfg.timeout:
            self.timers.schedule(TimerKey(K.TIMEOUT, w.name), now_mono + cfg.timeout)
        if cfg.run_mode is RunMode.FOREVER and cfg.start_seconds > 0:
            self.timers.schedule(TimerKey(K.UP, w.name), now_mono + cfg.start_seconds)
        else:
            # Run-to-completion workloads have no "quick failure": they are up at once.
            self._up(w)
        log.debug("%s: started pid %d (run %s)", w.name, child.pid, w.run_id)

    def reset_runs(self, w: Workload) -> None:
        """The run count (and the failed runs counted with it) starts from 0, durably."""
        self.history.save(self.store.reset_runs, w.name)
        w.runs, w.failed_runs, w.last_failure = 0, 0, None

    def start_now(self, w: Workload) -> None:
        """An operator's start of an idle workload: a fresh count of failures (and of runs, for
        a COMPLETED script); an agent runs now and keeps its schedule."""
        if w.state is S.COMPLETED:
            self.reset_runs(w)  # a new batch of max_runs
        w.failures = 0
        self.timers.cancel(TimerKey(K.RETRY, w.name))
        w.retry_wall = None
        if w.cfg.run_mode is RunMode.SCHEDULE:
            self.ticks.arm(w)  # start = run now, and keep the schedule going
        self.launch(w, T.START)

    def _record_run_pid(self, w: Workload, child: Child, at: float) -> None:
        """The spawned run's pid, start time and scope, for the restart sweep. An n_times run
        has its durable row already (begin_run before the spawn: its count must stay exact, so
        if the database cannot take it the run does not happen); for the other modes nothing
        is counted, so the row is written now, pid and all, in one INSERT that joins this
        wake's single commit (the same commit as before: it was never durable before the
        spawn). If the database cannot take it, a service or an agent runs anyway,
        unrecorded: keeping it up matters more than its history."""
        if w.run_id is not None:
            self.history.save(
                self.store.set_run_pid, w.run_id, child.pid, child.started, child.scope
            )
            return
        w.run_id = self.history.save(
            self.store.begin_run, w.name, at, False, child.pid, child.started, child.scope
        )

    def _schedule_retry(self, w: Workload, quick: bool = True) -> None:
        """Wait before the next start: BACKOFF for restart_delay after a run that stayed up,
        for the doubling backoff after a quick failure, or FATAL when that was one too many.

        FATAL keeps the failure count: a slow retry out of FATAL that fails quickly again is one
        more failure past max_retries, so FATAL again after one try, not a new burst. A try
        that stays up resets it (`_confirm_up`), and so does an operator's start.
        """
        policy = Backoff.from_config(w.cfg)
        if quick:
            w.failures += 1
        if quick and policy.exhausted(w.failures):
            # BACKOFF/EXITED/STOPPED -> FATAL
            self.history.transition(w, T.RETRIES_EXHAUSTED, f"{w.failures} quick failures in a row")
            self._schedule_fatal_retry(w)
            return
        delay = policy.delay(w.failures)
        if w.state is not S.BACKOFF:
            self.history.transition(w, T.WAIT_RETRY, f"next start in {delay:g}s")  # -> BACKOFF
        w.retry_wall = self.clock.wall() + delay
        self.timers.schedule(TimerKey(K.RETRY, w.name), self.clock.monotonic() + delay)

    def _schedule_fatal_retry(self, w: Workload) -> None:
        """FATAL: retry after fatal_retry_delay, or stay until an operator starts it (also for
        a FATAL restored from the state database at start)."""
        delay = Backoff.from_config(w.cfg).fatal_delay()
        if delay is None:
            w.retry_wall = None
            return
        w.retry_wall = self.clock.wall() + delay
        self.timers.schedule(TimerKey(K.RETRY, w.name), self.clock.monotonic() + delay)

    # ------------------------------------------------------------------ timers

    def schedules_armed(self) -> bool:
        """Some agent waits for a cron tick (the loop then watches the wall clock for steps)."""
        return any(self.ticks.armed(w) for w in self.workloads.values())

    def clock_stepped(self, step: float) -> None:
        """The wall clock was set by `step` seconds: re-plan every schedule now.

        Timers are monotonic and stay right; only what is shown as a wall time moves with the
        clock (`retry_at`), and every armed cron tick is decided again on the new time.
        """
        log.warning(
            "wall clock stepped %+.1fs; re-planning %d schedules",
            step,
            sum(1 for w in self.workloads.values() if self.ticks.armed(w)),
        )
        for w in list(self.workloads.values()):
            if w.retry_wall is not None:
                w.retry_wall += step
            self.ticks.replan(w, step)

    def _on_tick(self, name: str) -> None:
        w = self.workloads.get(name)
        if w is not None:
            self.ticks.on_timer(w)

    def _on_up(self, name: str) -> None:
        w = self.workloads.get(name)
        if w is not None and w.state is S.STARTING:
            self._up(w, f"up for {w.cfg.start_seconds:g}s")

    def _up(self, w: Workload, detail: str | None = None) -> None:
        self.history.transition(w, T.UP, detail)  # STARTING -> RUNNING
        if w.cfg.health_check is None:
            self._confirm_up(w)
        # else the first passing health check confirms it (`healthy`)

    def healthy(self, w: Workload) -> None:
        """The current run passed a health check: it counts as up, if it did not already."""
        if w.state is S.RUNNING and not w.up:
            self._confirm_up(w)

    def _confirm_up(self, w: Workload) -> None:
        """The run stayed up: its end will not be a quick failure, and earlier ones are
        forgiven (the backoff starts over)."""
        w.up = True
        w.failures = 0

    def _on_retry(self, name: str) -> None:
        w = self.workloads.get(name)
        if w is not None and w.state in (S.BACKOFF, S.FATAL):
            if w.state is S.FATAL:
                # One try out of FATAL, however FATAL was reached (a burst here, or restored
                # from the state DB by a new daemon): a quick failure of it is FATAL again.
                w.failures = max(w.failures, w.cfg.max_retries + 1)
            w.retry_wall = None
            w.restarts += 1
            self.launch(w, T.RETRY_DUE)  # BACKOFF/FATAL -> STARTING

    def _on_timeout(self, name: str) -> None:
        w = self.workloads.get(name)
        if w is not None and w.state in (S.STARTING, S.RUNNING):
            log.warning("%s: run timed out after %gs", name, w.cfg.timeout or 0)
            self.stop_run(w, R.TIMEOUT, AfterStop.RUN_MODE)

    def _on_kill(self, name: str) -> None:
        w = self.workloads.get(name)
        if w is not None and w.state is S.STOPPING and w.pid is not None:
            log.warning("%s: did not stop in %gs, sending SIGKILL", name, w.cfg.stop_timeout)
            self.history.transition(w, T.STOP_TIMEOUT, "SIGKILL")
            self._signal_live(w, signal.SIGKILL)

    # ------------------------------------------------------------------ stopping

    def stop_run(self, w: Workload, reason: ExitReason, then: AfterStop) -> None:
        """Ask a live child to stop: stop signal to its group now, SIGKILL after stop_timeout."""
        assert w.pid is not None
        w.stop_reason, w.then = reason, then
        self.history.transition(w, T.STOP, reason)  # STARTING/RUNNING -> STOPPING
        self.timers.cancel(TimerKey(K.UP, w.name))
        self.timers.cancel(TimerKey(K.TIMEOUT, w.name))
        signum = signal.Signals[f"SIG{w.cfg.stop_signal}"]
        self._signal_live(w, signum)
        if w.cfg.stop_timeout > 0:
            deadline = self.clock.monotonic() + w.cfg.stop_timeout
            self.timers.schedule(TimerKey(K.KILL, w.name), deadline)
        else:
            self._signal_live(w, signal.SIGKILL)

    def halt(self, w: Workload, reason: ExitReason, then: AfterStop) -> None:
        """Stop whatever the workload is doing; `then` says what follows once it is idle."""
        self.timers.cancel(TimerKey(K.RETRY, w.name))
        self.timers.cancel(TimerKey(K.TICK, w.name))
        w.retry_wall = None
        w.next_tick_wall = None
        if w.state is S.STOPPING:
            w.then = _merge_after_stop(w.then, then)
            return
        if w.state in (S.STARTING, S.RUNNING):
            self.stop_run(w, reason, then)
            return
        if w.state in (S.SCHEDULED, S.BACKOFF, S.EXITED, S.FATAL):
            self.history.transition(w, T.STOP, reason)  # -> STOPPED
        self._after_stop(w, then)

    def stop_all(self, which: Callable[[Workload], bool] = lambda w: True) -> None:
        """Shutdown: stop every workload `which` selects (stop signal, then SIGKILL after its
        stop_timeout); nothing starts again."""
        self.shutting_down = True
        for w in self.workloads.values():
            if not which(w):
                continue
            self.timers.cancel(TimerKey(K.TICK, w.name))
            self.timers.cancel(TimerKey(K.RETRY, w.name))
            if w.state in (S.STARTING, S.RUNNING):
                self.stop_run(w, R.STOPPED, AfterStop.STAY)
            elif w.state is S.STOPPING:
                w.then = AfterStop.STAY

    def kill_all(self) -> None:
        for w in self.workloads.values():
            if w.pid is not None:
                self.send_signal(w.pid, signal.SIGKILL)

    def active_count(self) -> int:
        """Children not reaped yet."""
        return sum(1 for w in self.workloads.values() if w.process is not None)

    def signal_run(self, w: Workload, signum: int) -> None:
        """An operator's signal to a live child's group (`signal`): no transition."""
        self._signal_live(w, signum)

    def _signal_live(self, w: Workload, signum: int) -> None:
        """Signal a child that is not reaped yet: its group, or itself if it has no group yet
        (a stop right after fork, before its setsid). Unreaped, its pid cannot be reused."""
        assert w.pid is not None
        self.send_signal(w.pid, signum, unreaped=True)

    def _after_stop(self, w: Workload, then: AfterStop) -> None:
        w.then = None
        match then:
            case AfterStop.STAY:
                pass
            case AfterStop.START:
                self.start_now(w)
            case AfterStop.REMOVE:
                self._forget(w)
            case AfterStop.REPLACE:
                assert w.pending_cfg is not None
                w.cfg, w.pending_cfg = w.pending_cfg, None
                w.planner = None
                w.failures = 0
                self.activate(w)
            case AfterStop.RUN_MODE:
                self._next_after_run(w)
            case _:
                assert_never(then)

    def _forget(self, w: Workload) -> None:
        for kind in WORKLOAD_TIMERS:
            self.timers.cancel(TimerKey(kind, w.name))
        self.workloads.pop(w.name, None)
        self.outputs.remove_workload(w.name)
        self.history.save(self.store.forget_workload, w.name)
        log.info("%s: removed", w.name)

    # ------------------------------------------------------------------ exits

    def reap(self) -> list[str]:
        """After a SIGCHLD: handle the children that exited. Names reaped.

        `waitid(WNOWAIT)` names an exited child without reaping it, so only that child's
        `Process.exitcode` is asked (which reaps it through multiprocessing, the one reaper):
        a restart costs one wait, not one per workload. A pid that is no workload's is reaped
        by `reap_other` if it is the zygote's or an orphan's; one owned elsewhere (a
        health-check command) or no answer at all falls back to checking every child.
        """
        by_pid = {w.pid: w for w in self.workloads.values() if w.process is not None}
        reaped: list[str] = []
        for _ in range(len(by_pid) + ORPHANS_PER_REAP):
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                break
            if info is None:
                return reaped
            w = by_pid.pop(info.si_pid, None)
            if w is None:  # a run started during this reap (a restart) that has exited too
                by_pid = {w.pid: w for w in self.workloads.values() if w.process is not None}
                w = by_pid.pop(info.si_pid, None)
            if w is None and self.reap_other(info.si_pid):
                continue  # the zygote, or an orphan a run left: reaped
            code = w.process.exitcode if w is not None else None
            if w is None or code is None:
                break
            reaped.append(w.name)
            self._on_exit(w, code)
        return reaped + self.reap_all()

    def reap_all(self) -> list[str]:
        """Check every live child through Process.exitcode; handle each exit. Names reaped."""
        reaped = []
        for w in list(self.workloads.values()):
            if w.process is None:
                continue
            code = w.process.exitcode
            if code is None:
                continue
            reaped.append(w.name)
            self._on_exit(w, code)
        self.sweep_others({w.pid for w in self.workloads.values() if w.pid is not None})
        return reaped

    def _on_exit(self, w: Workload, exitcode: int) -> None:
        pid = w.pid
        assert pid is not None
        status = decode(exitcode, w.stop_reason)
        now_wall, now_mono = self.clock.wall(), self.clock.monotonic()
        # The wall clock stamps the run for display; how long it lasted is measured on the
        # monotonic clock, which a clock step (NTP, `date -s`) cannot make negative or long.
        lasted = now_mono - (w.started_mono if w.started_mono is not None else now_mono)
        # Anything the run left behind in its process group goes with it.
        self.send_signal(pid, signal.SIGKILL)
        if w.run_id is not None:
            self.history.save(
                self.store.end_run,
                w.run_id,
                now_wall,
                status.exit_code,
                status.signal,
                status.reason,
                status.text,
                round(lasted, 3),
            )
        for kind in RUN_TIMERS:
            self.timers.cancel(TimerKey(kind, w.name))
        w.process, w.run_id = None, None
        w.last_exit, w.last_exit_wall = status, now_wall
        self._count_outcome(w, status.reason, status.exit_code)
        level = logging.INFO if status.reason in (R.EXIT, R.STOPPED) else logging.WARNING
        log.log(level, "%s: pid %d ended after %.1fs: %s", w.name, pid, lasted, status.text)
        old = w.state
        self.history.transition(w, T.EXITED, status.text)
        w.pid = None
        if old is S.STOPPING:
            # STOPPING -> STOPPED; what follows was decided when the stop was asked for.
            then = w.then if w.then is not None else AfterStop.RUN_MODE
            w.stop_reason = None
            self._after_stop(w, then)
        elif old is S.STARTING:
            self._schedule_retry(w)  # STARTING -> BACKOFF: a quick failure
        else:
            self._next_after_run(w)

    def _count_outcome(self, w: Workload, reason: ExitReason, exit_code: int | None) -> None:
        if is_failure(reason, exit_code):
            w.failed_runs += 1
            w.last_failure = reason.value

    def _next_after_run(self, w: Workload) -> None:
        """What a run that ended (on its own or by a limit) leads to, by run mode."""
        if self.shutting_down or w.operator_stopped:
            return
        mode = w.cfg.run_mode
        if mode is RunMode.FOREVER:
            if w.up and w.cfg.restart_delay == 0:
                # restart_delay 0: nothing to wait for (the kill -9 restart latency path).
                w.restarts += 1
                self.launch(w, T.START)  # EXITED/STOPPED -> STARTING
            else:
                # A run that never counted as up (ended before start_seconds, or before its
                # first passing health check) is a quick failure; any other waits restart_delay.
                self._schedule_retry(w, quick=not w.up)
        elif mode is RunMode.N_TIMES:
            self.launch(w, T.START)  # next run, or -> COMPLETED
        else:
            self.history.transition(w, T.WAIT_TICK)  # -> SCHEDULED
            if TimerKey(K.TICK, w.name) not in self.timers and w.planner is not None:
                self.ticks.rearm(w)
