"""The Supervisor: the workload lifecycle plus the operator's commands on it.

Everything the CLI, the APIs and the loop ask of the workloads goes through these methods —
start, stop, restart, a reload plan and its application, shutdown — each checking its request
and answering with a small dict for IPC. The event-by-event mechanics are in
`mastercontrol.daemon.lifecycle`. Imports the stdlib and the package's own modules only.
"""

from __future__ import annotations

import signal
from typing import Any

from mastercontrol.config.model import WorkloadConfig
from mastercontrol.daemon.lifecycle import Lifecycle, log
from mastercontrol.daemon.workload import Workload
from mastercontrol.engine.planner import ReloadPlan, plan_reload
from mastercontrol.engine.states import ACTIVE, ProcState
from mastercontrol.errors import IPCError
from mastercontrol.ipc.protocol import ErrorCode

S = ProcState


class Supervisor(Lifecycle):
    """Owns every Workload; the one interface the loop and the IPC commands use."""

    # ------------------------------------------------------------------ operator commands

    def get(self, name: str) -> Workload:
        w = self.workloads.get(name)
        if w is None:
            raise IPCError(ErrorCode.UNKNOWN_WORKLOAD, f"no such workload: {name}")
        return w

    def _wanted(self, name: str) -> Workload:
        """The workload an operator wants running: refused while shutting down or disabled;
        otherwise its remembered operator stop is cleared."""
        w = self.get(name)
        if self.shutting_down:
            raise IPCError(ErrorCode.SHUTTING_DOWN, "the daemon is shutting down")
        if not w.cfg.enabled:
            raise IPCError(ErrorCode.DISABLED, f"{name} is disabled in its config (enabled: false)")
        if w.operator_stopped:
            w.operator_stopped = False
            self._save(self.store.set_operator_stopped, name, False)
        return w

    def start(self, name: str) -> dict[str, Any]:
        w = self._wanted(name)
        if w.state in ACTIVE:
            if w.state is S.STOPPING:
                w.then = "start"
                return {"name": name, "state": w.state, "message": "will start once stopped"}
            return {"name": name, "state": w.state, "message": "already running"}
        self._operator_launch(w)
        return {"name": name, "state": w.state, "pid": w.pid}

    def stop(self, name: str) -> dict[str, Any]:
        w = self.get(name)
        w.operator_stopped = True
        self._save(self.store.set_operator_stopped, name, True)
        if w.state in (S.STOPPED, S.COMPLETED):
            return {"name": name, "state": w.state, "message": "not running"}
        self._halt(w, "stopped", then=None)
        return {"name": name, "state": w.state}

    def restart(self, name: str) -> dict[str, Any]:
        w = self._wanted(name)
        if w.state in ACTIVE:
            self._halt(w, "stopped", then="start")
        else:
            self._operator_launch(w)
        return {"name": name, "state": w.state, "pid": w.pid}

    def stop_for_limit(self, name: str, reason: str) -> None:
        """Stop a run that broke a limit (rss_limit, unhealthy); its run mode decides what next."""
        w = self.workloads.get(name)
        if w is not None and w.state in (S.STARTING, S.RUNNING):
            self._stop_process(w, reason, then=None)

    # ------------------------------------------------------------------ reload

    def plan(self, desired: dict[str, WorkloadConfig]) -> ReloadPlan:
        current = {n: (w.pending_cfg or w.cfg) for n, w in self.workloads.items()}
        return plan_reload(current, desired)

    def apply(self, desired: dict[str, WorkloadConfig]) -> ReloadPlan:
        """Apply only the difference: unchanged workloads keep running untouched."""
        plan = self.plan(desired)
        for name in plan.remove:
            self._halt(self.workloads[name], "stopped", then="remove")
        for name in plan.change:
            w = self.workloads[name]
            w.pending_cfg = desired[name]
            log.info("%s: config changed, restarting", name)
            self._halt(w, "stopped", then="replace")
        for name in plan.add:
            log.info("%s: added", name)
            self._add(desired[name])
        for name in plan.unchanged:
            # Keep runtime state; pick up the new file location for messages.
            self.workloads[name].cfg = desired[name]
        return plan

    # ------------------------------------------------------------------ shutdown

    def shutdown(self) -> None:
        """Stop every workload (stop signal, then SIGKILL after its stop_timeout)."""
        self.shutting_down = True
        for w in self.workloads.values():
            for kind in ("tick", "retry"):
                self.timers.cancel((kind, w.name))
            if w.state in (S.STARTING, S.RUNNING):
                self._stop_process(w, "stopped", then="stay")
            elif w.state is S.STOPPING:
                w.then = "stay"

    def active_count(self) -> int:
        return sum(1 for w in self.workloads.values() if w.process is not None)

    def kill_all(self) -> None:
        for w in self.workloads.values():
            if w.pid is not None:
                self.send_signal(w.pid, signal.SIGKILL)
