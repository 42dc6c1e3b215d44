"""The Supervisor: the operator's commands on the workloads, and reload.

Everything the CLI and the APIs ask of the workloads goes through these methods — start, stop,
restart, a reload plan and its application, what `status` shows of a workload's history and
log — each checking its request (IPCError with a stable code) and answering with a small dict
for IPC. The master's own limits (max_rss_mb, health checks) stop runs through
`stop_for_limit`, and a passing health check is reported through `note_healthy`. The
event-by-event mechanics are the Lifecycle's (`mastercontrol.daemon.lifecycle`), which this
class uses through its public verbs only.
Imports the stdlib and the package's own modules only.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Mapping
from typing import Any

from mastercontrol.config.model import WorkloadConfig
from mastercontrol.daemon.lifecycle import Lifecycle
from mastercontrol.daemon.workload import AfterStop, Workload
from mastercontrol.engine.exitstatus import ExitReason
from mastercontrol.engine.planner import ReloadPlan, plan_reload
from mastercontrol.engine.states import ACTIVE, ProcState
from mastercontrol.errors import IPCError
from mastercontrol.ipc.protocol import ErrorCode
from mastercontrol.store.queries import RunRow

log = logging.getLogger(__name__)

S = ProcState


class Supervisor:
    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle

    @property
    def workloads(self) -> Mapping[str, Workload]:
        return self.lifecycle.workloads

    @property
    def shutting_down(self) -> bool:
        return self.lifecycle.shutting_down

    # ------------------------------------------------------------------ reading

    def get(self, name: str) -> Workload:
        w = self.lifecycle.workloads.get(name)
        if w is None:
            raise IPCError(ErrorCode.UNKNOWN_WORKLOAD, f"no such workload: {name}")
        return w

    def recent_runs(self, name: str, limit: int) -> list[RunRow]:
        return self.lifecycle.store.recent_runs(name, limit=limit)

    def last_duration(self, name: str) -> float | None:
        return self.lifecycle.store.last_duration(name)

    def log_dropped_bytes(self, name: str) -> int:
        """Bytes of the workload's output its log could not take (full disk, I/O errors)."""
        writer = self.lifecycle.outputs.writer(name)
        return writer.dropped_bytes if writer is not None else 0

    # ------------------------------------------------------------------ operator commands

    def _wanted(self, name: str) -> Workload:
        """The workload an operator wants running: refused while shutting down or disabled;
        otherwise its remembered operator stop is cleared."""
        w = self.get(name)
        life = self.lifecycle
        if life.shutting_down:
            raise IPCError(ErrorCode.SHUTTING_DOWN, "the daemon is shutting down")
        if not w.cfg.enabled:
            raise IPCError(ErrorCode.DISABLED, f"{name} is disabled in its config (enabled: false)")
        if w.held:
            raise IPCError(
                ErrorCode.HELD,
                f"{name} is held: the state database was lost and its run count with it; "
                f"'mastercontrol-ctl reset {name}' starts its count from 0",
            )
        if w.operator_stopped:
            w.operator_stopped = False
            life.history.save(life.store.set_operator_stopped, name, False)
        return w

    def start(self, name: str) -> dict[str, Any]:
        w = self._wanted(name)
        if w.state in ACTIVE:
            if w.state is S.STOPPING:
                w.then = AfterStop.START
                return {"name": name, "state": w.state, "message": "will start once stopped"}
            return {"name": name, "state": w.state, "message": "already running"}
        self.lifecycle.start_now(w)
        return {"name": name, "state": w.state, "pid": w.pid}

    def stop(self, name: str) -> dict[str, Any]:
        w = self.get(name)
        if w.state is S.COMPLETED:
            # Nothing to stop, and nothing to remember: a recorded stop would show the finished
            # script as STOPPED after the next daemon start.
            return {"name": name, "state": w.state, "message": "already completed"}
        life = self.lifecycle
        w.operator_stopped = True
        life.history.save(life.store.set_operator_stopped, name, True)
        if w.state is S.STOPPED:
            return {"name": name, "state": w.state, "message": "not running"}
        life.halt(w, ExitReason.STOPPED, AfterStop.STAY)
        return {"name": name, "state": w.state}

    def restart(self, name: str) -> dict[str, Any]:
        w = self._wanted(name)
        if w.state in ACTIVE:
            self.lifecycle.halt(w, ExitReason.STOPPED, AfterStop.START)
        else:
            self.lifecycle.start_now(w)
        return {"name": name, "state": w.state, "pid": w.pid}

    def signal(self, name: str, signum: signal.Signals) -> dict[str, Any]:
        """Send an operator's signal to the workload's process group; no state changes (if
        the signal ends the run, the reaper sees an exit like any other)."""
        w = self.get(name)
        if w.state not in ACTIVE or w.pid is None:
            raise IPCError(
                ErrorCode.NOT_RUNNING, f"{name} is not running ({w.state}): no signal sent"
            )
        self.lifecycle.signal_run(w, signum)
        log.info("%s: %s sent to process group %d by the operator", name, signum.name, w.pid)
        sent = signum.name
        return {
            "name": name,
            "state": w.state,
            "pid": w.pid,
            "signal": sent,
            "message": f"{sent} sent",
        }

    def stop_for_limit(self, name: str, reason: ExitReason) -> None:
        """Stop a run that broke a limit (rss_limit, unhealthy); its run mode decides what next."""
        w = self.lifecycle.workloads.get(name)
        if w is not None and w.state in (S.STARTING, S.RUNNING):
            self.lifecycle.stop_run(w, reason, AfterStop.RUN_MODE)

    def note_healthy(self, name: str, pid: int) -> None:
        """The run `pid` of `name` passed its health check: it counts as up (the backoff of a
        service that fails its checks starts over only once a run of it was healthy)."""
        w = self.lifecycle.workloads.get(name)
        if w is not None and w.pid == pid:
            self.lifecycle.healthy(w)

    # ------------------------------------------------------------------ reload

    def plan(self, desired: Mapping[str, WorkloadConfig]) -> ReloadPlan:
        current = {n: (w.pending_cfg or w.cfg) for n, w in self.lifecycle.workloads.items()}
        return plan_reload(current, desired)

    def apply(self, desired: Mapping[str, WorkloadConfig]) -> ReloadPlan:
        """Apply only the difference: unchanged workloads keep running untouched."""
        life = self.lifecycle
        plan = self.plan(desired)
        for name in plan.remove:
            life.halt(life.workloads[name], ExitReason.STOPPED, AfterStop.REMOVE)
        for name in plan.change:
            w = life.workloads[name]
            w.pending_cfg = desired[name]
            log.info("%s: config changed, restarting", name)
            life.halt(w, ExitReason.STOPPED, AfterStop.REPLACE)
        for name in plan.add:
            log.info("%s: added", name)
            life.add(desired[name])
        for name in plan.unchanged:
            # Keep runtime state; pick up the new file location for messages.
            life.workloads[name].cfg = desired[name]
        return plan
