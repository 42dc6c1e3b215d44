"""JSON views of the master's state for `list`, `status` and the APIs: stable keys, no logic.

Imports only the standard library and the package's own modules.
"""

from __future__ import annotations

from typing import Any

from mastercontrol.config.internal import is_internal
from mastercontrol.daemon.workload import Workload
from mastercontrol.engine.states import ACTIVE


def workload_view(w: Workload, now_mono: float) -> dict[str, Any]:
    """One workload as `list --json` shows it; every key is always present."""
    cfg = w.cfg
    active = w.state in ACTIVE
    last = w.last_exit
    return {
        "name": cfg.name,
        "internal": is_internal(cfg.name),  # synthesized from daemon.yaml (config/internal.py)
        "type": cfg.type.value,
        "run_mode": cfg.run_mode.value,
        "state": w.state.value,
        "pid": w.pid,
        "uptime_seconds": round(now_mono - w.started_mono, 3)
        if active and w.started_mono is not None
        else None,
        "started_at": w.started_wall if active else None,
        "runs": w.runs,
        "max_runs": cfg.max_runs,
        "restarts": w.restarts,
        "skipped_ticks": w.skipped_ticks,
        "schedule": cfg.schedule,
        "next_run_at": w.next_tick_wall,
        "retry_at": w.retry_wall,
        "last_exit": None
        if last is None
        else {
            "exit_code": last.exit_code,
            "signal": last.signal,
            "reason": last.reason,
            "text": last.text,
            "at": w.last_exit_wall,
        },
        # Failed runs (exitstatus.is_failure) of the current generation: for an n_times
        # script its batch of max_runs, otherwise every recorded run.
        "failed_runs": w.failed_runs,
        "last_failure_reason": w.last_failure,
        "last_reason": None if last is None else last.reason.value,
        "operator_stopped": w.operator_stopped,
        "held": w.held,  # counted, waiting for `reset` after the state database was lost
        "enabled": cfg.enabled,
        "version": cfg.version,
        "tags": list(cfg.tags),
        "source": cfg.source,
        "metrics": w.metrics,
    }
