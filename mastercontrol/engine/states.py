"""Workload states, triggers and the one transition table.

`next_state(state, trigger)` is a pure dictionary lookup; every state change in the daemon goes
through it, and any pair not in the table raises IllegalTransition. Side effects (signals,
spawns, timers) belong to the daemon and happen after the transition. Imports only the stdlib.
"""

from __future__ import annotations

from enum import StrEnum

from mastercontrol.errors import IllegalTransition


class ProcState(StrEnum):
    STOPPED = "STOPPED"  # not running and not wanted (operator stop, or never started)
    SCHEDULED = "SCHEDULED"  # agent waiting for its next cron tick
    STARTING = "STARTING"  # spawned, not yet up for start_seconds
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"  # waiting for the next start: restart_delay, or a quick failure's backoff
    STOPPING = "STOPPING"  # signal sent, waiting for the exit (SIGKILL after stop_timeout)
    EXITED = "EXITED"  # a run ended on its own
    FATAL = "FATAL"  # too many quick failures; slow retry only
    COMPLETED = "COMPLETED"  # n_times workload has done all of its runs


class Trigger(StrEnum):
    START = "start"  # operator start, autorestart, retry, n_times next run
    TICK = "tick"  # cron tick of a scheduled agent
    UP = "up"  # up for start_seconds
    EXITED = "exited"  # the child process ended
    SPAWN_FAILED = "spawn_failed"
    RETRY_DUE = "retry_due"
    RETRIES_EXHAUSTED = "retries_exhausted"
    STOP = "stop"  # operator stop, timeout, restart, reload, shutdown, rss/health limits
    STOP_TIMEOUT = "stop_timeout"  # SIGKILL sent once
    WAIT_TICK = "wait_tick"  # an agent goes back to waiting for its schedule
    WAIT_RETRY = "wait_retry"  # a service's run ended: restart_delay (or its backoff) first
    ALL_RUNS_DONE = "all_runs_done"


S = ProcState
T = Trigger

# States from which a workload is not running and may be started.
STARTABLE = frozenset({S.STOPPED, S.SCHEDULED, S.EXITED, S.FATAL, S.COMPLETED, S.BACKOFF})
# States with a live child process.
ACTIVE = frozenset({S.STARTING, S.RUNNING, S.STOPPING})
# States where `stop` needs to signal a process.
STOPPABLE = frozenset({S.STARTING, S.RUNNING})
# States with no process where `stop` is just a state change.
IDLE_STOPPABLE = frozenset({S.SCHEDULED, S.BACKOFF, S.EXITED, S.FATAL})

TRANSITIONS: dict[tuple[ProcState, Trigger], ProcState] = {
    # operator/planner start of an idle workload (BACKOFF: start now, not at the retry)
    **{(s, T.START): S.STARTING for s in STARTABLE},
    (S.SCHEDULED, T.TICK): S.STARTING,
    (S.STARTING, T.UP): S.RUNNING,
    # a quick failure of a forever workload
    (S.STARTING, T.EXITED): S.BACKOFF,
    (S.STARTING, T.SPAWN_FAILED): S.BACKOFF,
    (S.BACKOFF, T.RETRY_DUE): S.STARTING,
    (S.BACKOFF, T.RETRIES_EXHAUSTED): S.FATAL,
    (S.FATAL, T.RETRY_DUE): S.STARTING,
    (S.RUNNING, T.EXITED): S.EXITED,
    # a forever run that ended after STARTING (an exit, or stopped by a limit) waits
    # restart_delay before its next start; one that never counted as up is a quick failure,
    # and may be the one too many
    (S.EXITED, T.WAIT_RETRY): S.BACKOFF,
    (S.STOPPED, T.WAIT_RETRY): S.BACKOFF,
    (S.EXITED, T.RETRIES_EXHAUSTED): S.FATAL,
    (S.STOPPED, T.RETRIES_EXHAUSTED): S.FATAL,
    # stopping
    **{(s, T.STOP): S.STOPPING for s in STOPPABLE},
    (S.STOPPING, T.STOP_TIMEOUT): S.STOPPING,
    (S.STOPPING, T.EXITED): S.STOPPED,
    **{(s, T.STOP): S.STOPPED for s in IDLE_STOPPABLE},
    # what comes after a run ended (the planner picks by run mode)
    (S.EXITED, T.WAIT_TICK): S.SCHEDULED,
    (S.STOPPED, T.WAIT_TICK): S.SCHEDULED,
    (S.FATAL, T.WAIT_TICK): S.SCHEDULED,
    (S.EXITED, T.ALL_RUNS_DONE): S.COMPLETED,
    (S.STOPPED, T.ALL_RUNS_DONE): S.COMPLETED,
    (S.FATAL, T.ALL_RUNS_DONE): S.COMPLETED,
    (S.BACKOFF, T.ALL_RUNS_DONE): S.COMPLETED,
}


def next_state(state: ProcState, trigger: Trigger) -> ProcState:
    """The state that `trigger` leads to from `state`; IllegalTransition if none."""
    try:
        return TRANSITIONS[(state, trigger)]
    except KeyError:
        raise IllegalTransition(f"{trigger} is not allowed in state {state}") from None
