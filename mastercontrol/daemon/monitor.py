"""Health monitoring inside the master: periodic psutil samples, the max_rss_mb cap and
service health checks.

Owns the samplers, RSS watches, health trackers and probes in flight; it never blocks (probes
are non-blocking sockets or short-lived children with a pidfd) and never changes workload state
itself: a limit or a failed check asks the Supervisor to stop the run with a reason
(`rss_limit`, `unhealthy`), and the run mode decides what follows; a passing check tells it
the run is up (so a service that never passes backs off and goes FATAL like a crash loop).
Driven by the loop through timers (SAMPLE, and HEALTH per workload) and, as an event source
(`mastercontrol.daemon.events`), the fds of probes in flight. Imports the stdlib, psutil
(through metrics) and the package's own modules only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mastercontrol.daemon.events import READ, WRITE, Registration
from mastercontrol.daemon.healthcheck import Probe, make_probe, reap_orphans
from mastercontrol.daemon.metrics import ProcessSampler, RssWatch, system_sample
from mastercontrol.daemon.supervisor import Supervisor
from mastercontrol.daemon.workload import Workload
from mastercontrol.engine.clock import Clock
from mastercontrol.engine.exitstatus import ExitReason
from mastercontrol.engine.health import HealthTracker, ProbeResult
from mastercontrol.engine.states import ProcState
from mastercontrol.engine.timers import TimerHeap, TimerKey, TimerKind

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Check:
    """One workload's health check: the tracker of the current run and the probe in flight."""

    tracker: HealthTracker
    pid: int
    probe: Probe | None = None


class Monitor:
    def __init__(
        self,
        supervisor: Supervisor,
        clock: Clock,
        timers: TimerHeap[TimerKey],
        disk_paths: list[str],
        interval: float,
        after_fork: Callable[[], None] = lambda: None,
    ) -> None:
        self.sup = supervisor
        self.after_fork = after_fork  # a command probe was started (child/scope.py)
        self.clock = clock
        self.timers = timers
        self.disk_paths = disk_paths
        self.interval = interval
        self.sampler = ProcessSampler()
        self.rss = RssWatch()
        self.checks: dict[str, Check] = {}
        self.watched: set[str] = set()  # names whose config has a health check
        self.system: dict[str, Any] | None = None
        self.refreshed_at = -1e9
        system_sample([])  # prime psutil's CPU counters so the first real sample means something

    # ------------------------------------------------------------------ sampling

    def sample(self) -> None:
        """The timer's sample: the system, and the workloads whose max_rss_mb needs watching.

        Every other workload is sampled on demand (`refresh`, when list --json, status or top
        asks), so an idle master with hundreds of workloads does almost no work. Only these
        timed samples count towards a max_rss_mb breach: how often someone runs `status` must
        not change when a workload is restarted.
        """
        workloads = list(self.sup.workloads.values())
        self._sample([w for w in workloads if w.cfg.max_rss_mb], watch_rss=True)
        self.sampler.prune(w.pid for w in workloads if w.pid is not None)
        self.system = system_sample(self.disk_paths).to_dict()

    def refresh(self, name: str | None = None, max_age: float = 1.0) -> None:
        """Fresh figures for one workload, or for all unless sampled less than `max_age` ago."""
        if name is not None:
            self._sample([self.sup.workloads[name]], watch_rss=False)
        else:
            now = self.clock.monotonic()
            if now - self.refreshed_at >= max_age:
                self._sample(list(self.sup.workloads.values()), watch_rss=False)
                self.refreshed_at = now
        if self.system is None:
            self.system = system_sample(self.disk_paths).to_dict()

    def _sample(self, workloads: list[Workload], watch_rss: bool) -> None:
        """One oneshot() per running workload; with `watch_rss`, a cap breached for long enough
        restarts the run."""
        now = self.clock.monotonic()
        for w in workloads:
            if w.pid is None or w.state is ProcState.STOPPING:
                w.metrics = None
                continue
            cap = w.cfg.max_rss_mb
            # The tree walk scans /proc; only workloads with a cap pay for it.
            sample = self.sampler.sample_tree(w.pid) if cap else self.sampler.sample(w.pid)
            w.metrics = sample.to_dict() if sample is not None else None
            if (
                watch_rss
                and cap
                and sample is not None
                and self.rss.observe(w.name, sample.rss_bytes, cap * 1024 * 1024, now)
            ):
                self.rss.forget(w.name)
                log.warning(
                    "%s: resident memory %.0f MiB stayed above max_rss_mb %d, restarting",
                    w.name,
                    sample.rss_bytes / 2**20,
                    cap,
                )
                self.sup.stop_for_limit(w.name, ExitReason.RSS_LIMIT)

    # ------------------------------------------------------------------ health checks

    def note_configs(self) -> None:
        """After boot or reload: which workloads have (or are about to have) a health check."""
        self.watched = {
            n
            for n, w in self.sup.workloads.items()
            if w.cfg.health_check is not None
            or (w.pending_cfg is not None and w.pending_cfg.health_check is not None)
        }

    def sync_checks(self) -> None:
        """Follow runs starting and ending: a new RUNNING pid gets a fresh tracker and timer.

        Called after every wake; it looks only at workloads with a health check (none: no work).
        """
        if not self.watched and not self.checks:
            return
        now = self.clock.monotonic()
        for name in self.watched | set(self.checks):
            w = self.sup.workloads.get(name)
            if w is None:
                self._drop(name)
                continue
            hc = w.cfg.health_check
            check = self.checks.get(name)
            running = hc is not None and w.state is ProcState.RUNNING and w.pid is not None
            if not running:
                if check is not None:
                    self._drop(name)
                continue
            assert hc is not None and w.pid is not None
            if check is None or check.pid != w.pid:
                if check is not None:
                    self._drop(name)
                tracker = HealthTracker(hc, now)
                self.checks[name] = Check(tracker, w.pid)
                self.timers.schedule(TimerKey(TimerKind.HEALTH, name), tracker.next_probe_due())

    def _drop(self, name: str) -> None:
        check = self.checks.pop(name, None)
        self.timers.cancel(TimerKey(TimerKind.HEALTH, name))
        if check is not None and check.probe is not None:
            check.probe.close()

    def on_health_timer(self, name: str) -> None:
        check = self.checks.get(name)
        if check is None:
            return
        now = self.clock.monotonic()
        probe = check.probe
        if probe is None:
            probe = make_probe(check.tracker.check, self.after_fork)
            check.probe = probe
            result = probe.start(now)
        else:
            result = probe.poll(now) if probe.poll_interval is not None else None
            if result is None and now >= probe.deadline:
                result = probe.on_timeout(now)
        if result is None:
            wake = probe.deadline
            if probe.poll_interval is not None:
                wake = min(wake, now + probe.poll_interval)
            self.timers.schedule(TimerKey(TimerKind.HEALTH, name), wake)
        else:
            self._finish(name, check, result)

    def registrations(self) -> dict[int, Registration]:
        """Every probe in flight that has an fd, in the direction it waits for."""
        regs: dict[int, Registration] = {}
        for check in self.checks.values():
            probe = check.probe
            if probe is not None:
                fd = probe.fileno()
                if fd is not None:
                    regs[fd] = Registration(probe, WRITE if probe.wants_write() else READ)
        return regs

    def on_ready(self, owner: object, events: int, now: float) -> None:
        for name, check in list(self.checks.items()):
            probe = check.probe
            if probe is not None and probe is owner:
                result = probe.on_ready(now)
                if result is not None:
                    self._finish(name, check, result)
                return

    def _finish(self, name: str, check: Check, result: ProbeResult) -> None:
        assert check.probe is not None
        check.probe.close()
        check.probe = None
        now = self.clock.monotonic()
        if check.tracker.record(result, now):
            log.warning(
                "%s: health check failed %d times (%s), restarting",
                name,
                check.tracker.check.failures,
                result.message,
            )
            self._drop(name)
            self.sup.stop_for_limit(name, ExitReason.UNHEALTHY)
            return
        if result.healthy:
            self.sup.note_healthy(name, check.pid)
        else:
            log.info("%s: health check failed: %s", name, result.message)
        self.timers.schedule(TimerKey(TimerKind.HEALTH, name), check.tracker.next_probe_due())

    def on_sigchld(self) -> None:
        reap_orphans()

    def health_view(self, name: str) -> dict[str, Any] | None:
        check = self.checks.get(name)
        return check.tracker.to_dict() if check is not None else None

    def close(self) -> None:
        for name in list(self.checks):
            with contextlib.suppress(Exception):
                self._drop(name)
