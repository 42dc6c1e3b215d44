"""The state machine: every allowed edge, and every other pair raising IllegalTransition."""

from __future__ import annotations

import itertools

import pytest

from mastercontrol.engine.states import (
    ACTIVE,
    IDLE_STOPPABLE,
    STARTABLE,
    STOPPABLE,
    TRANSITIONS,
    ProcState,
    Trigger,
    next_state,
)
from mastercontrol.errors import IllegalTransition

S = ProcState
T = Trigger

# Written out independently of states.py, so that any change to the table is a deliberate edit
# in two places.
EXPECTED: dict[tuple[ProcState, Trigger], ProcState] = {
    (S.STOPPED, T.START): S.STARTING,
    (S.EXITED, T.START): S.STARTING,
    (S.FATAL, T.START): S.STARTING,
    (S.COMPLETED, T.START): S.STARTING,
    (S.SCHEDULED, T.START): S.STARTING,
    (S.BACKOFF, T.START): S.STARTING,
    (S.SCHEDULED, T.TICK): S.STARTING,
    (S.STARTING, T.UP): S.RUNNING,
    (S.STARTING, T.EXITED): S.BACKOFF,
    (S.STARTING, T.SPAWN_FAILED): S.BACKOFF,
    (S.BACKOFF, T.RETRY_DUE): S.STARTING,
    (S.BACKOFF, T.RETRIES_EXHAUSTED): S.FATAL,
    (S.FATAL, T.RETRY_DUE): S.STARTING,
    (S.RUNNING, T.EXITED): S.EXITED,
    (S.EXITED, T.WAIT_RETRY): S.BACKOFF,
    (S.STOPPED, T.WAIT_RETRY): S.BACKOFF,
    (S.EXITED, T.RETRIES_EXHAUSTED): S.FATAL,
    (S.STOPPED, T.RETRIES_EXHAUSTED): S.FATAL,
    (S.STARTING, T.STOP): S.STOPPING,
    (S.RUNNING, T.STOP): S.STOPPING,
    (S.STOPPING, T.STOP_TIMEOUT): S.STOPPING,
    (S.STOPPING, T.EXITED): S.STOPPED,
    (S.SCHEDULED, T.STOP): S.STOPPED,
    (S.BACKOFF, T.STOP): S.STOPPED,
    (S.EXITED, T.STOP): S.STOPPED,
    (S.FATAL, T.STOP): S.STOPPED,
    (S.EXITED, T.WAIT_TICK): S.SCHEDULED,
    (S.STOPPED, T.WAIT_TICK): S.SCHEDULED,
    (S.FATAL, T.WAIT_TICK): S.SCHEDULED,
    (S.EXITED, T.ALL_RUNS_DONE): S.COMPLETED,
    (S.STOPPED, T.ALL_RUNS_DONE): S.COMPLETED,
    (S.FATAL, T.ALL_RUNS_DONE): S.COMPLETED,
    (S.BACKOFF, T.ALL_RUNS_DONE): S.COMPLETED,
}

ALL_PAIRS = set(itertools.product(ProcState, Trigger))
ILLEGAL = sorted(ALL_PAIRS - set(TRANSITIONS))


def test_table_is_exactly_the_expected_edges() -> None:
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize(("pair", "target"), sorted(EXPECTED.items()), ids=str)
def test_allowed_transition(pair: tuple[ProcState, Trigger], target: ProcState) -> None:
    state, trigger = pair
    assert next_state(state, trigger) is target


@pytest.mark.parametrize("pair", ILLEGAL, ids=str)
def test_illegal_transition_raises(pair: tuple[ProcState, Trigger]) -> None:
    state, trigger = pair
    with pytest.raises(IllegalTransition, match=f"{trigger}.*{state}"):
        next_state(state, trigger)


def test_named_illegal_examples() -> None:
    for state, trigger in [
        (S.RUNNING, T.TICK),
        (S.COMPLETED, T.STOP),
        (S.STOPPED, T.STOP),
        (S.RUNNING, T.START),
        (S.STOPPING, T.START),
        (S.STOPPED, T.EXITED),
    ]:
        with pytest.raises(IllegalTransition):
            next_state(state, trigger)


def test_every_state_can_be_reached_and_left() -> None:
    targets = set(TRANSITIONS.values())
    sources = {state for state, _ in TRANSITIONS}
    assert targets == set(ProcState)
    assert sources == set(ProcState)


def test_startable_states_accept_start() -> None:
    for state in STARTABLE:
        assert next_state(state, T.START) is S.STARTING


def test_stoppable_states_go_to_stopping_and_idle_ones_straight_to_stopped() -> None:
    for state in STOPPABLE:
        assert next_state(state, T.STOP) is S.STOPPING
    for state in IDLE_STOPPABLE:
        assert next_state(state, T.STOP) is S.STOPPED


def test_only_active_states_can_see_a_process_exit() -> None:
    exits = {state for state, trigger in TRANSITIONS if trigger is T.EXITED}
    assert exits == ACTIVE


def test_states_and_triggers_are_their_stored_strings() -> None:
    assert all(state.value == state.name for state in ProcState)
    assert str(S.BACKOFF) == "BACKOFF"
    assert str(T.RETRY_DUE) == "retry_due"
