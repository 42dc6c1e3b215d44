"""The runtime record of one supervised workload: its config, state and current child.

Plain data owned by the Lifecycle; nothing here acts. `AfterStop` says what follows a stop
once the child is gone. Imports only the standard library and the package's own modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from mastercontrol.config.model import WorkloadConfig
from mastercontrol.engine.exitstatus import ExitReason, ExitStatus
from mastercontrol.engine.schedule import TickPlanner
from mastercontrol.engine.states import ProcState


class AfterStop(Enum):
    """What follows a stop once the workload is idle (its child, if any, reaped)."""

    STAY = "stay"  # stay stopped: operator stop, shutdown
    START = "start"  # start again: restart, or a start asked for while stopping
    REMOVE = "remove"  # forget the workload: reload removed its file
    REPLACE = "replace"  # take the pending config and go on: reload changed its file
    RUN_MODE = "run_mode"  # the run mode decides, as after an exit: a limit (timeout, rss, health)


@dataclass
class Workload:
    cfg: WorkloadConfig
    state: ProcState = ProcState.STOPPED
    pid: int | None = None
    process: Any = None  # multiprocessing Process of the current run (reaped via .exitcode)
    run_id: int | None = None
    runs: int = 0  # runs started in the current generation (n_times counting)
    started_mono: float | None = None
    started_wall: float | None = None
    stop_reason: ExitReason | None = None  # why the master asked the current run to stop
    then: AfterStop | None = None  # what follows the stop in progress
    pending_cfg: WorkloadConfig | None = None  # config to apply after a reload stop
    failures: int = 0  # consecutive quick failures (forever mode backoff); FATAL keeps it
    # The current run counts as up: start_seconds passed and, with a health check, one check
    # passed. Its end is then not a quick failure.
    up: bool = False
    failed_runs: int = 0  # failed runs (exitstatus.is_failure) in the current generation
    last_failure: str | None = None  # the reason of the newest of them
    restarts: int = 0  # automatic restarts since the daemon started
    last_exit: ExitStatus | None = None
    last_exit_wall: float | None = None
    retry_wall: float | None = None  # when BACKOFF/FATAL retries, for display
    planner: TickPlanner | None = None
    next_tick_wall: float | None = None
    operator_stopped: bool = False
    held: bool = False  # counted, and the state database was lost: waits for the operator
    skipped_ticks: int = 0
    metrics: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.cfg.name
