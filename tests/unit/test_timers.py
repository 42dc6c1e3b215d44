"""TimerHeap: ordering, replacement, cancellation, select() timeouts and bounded growth; the
TimerTable dispatcher and its typed keys."""

from __future__ import annotations

import math
import random

import pytest

from mastercontrol.engine.timers import (
    TimerHandler,
    TimerHeap,
    TimerKey,
    TimerKind,
    TimerTable,
    UnknownTimer,
)


def test_pop_due_returns_due_keys_in_deadline_order_and_keeps_later_ones() -> None:
    heap: TimerHeap[tuple[str, str]] = TimerHeap()
    heap.schedule(("timeout", "b"), 30.0)
    heap.schedule(("backoff", "a"), 10.0)
    heap.schedule(("tick", "c"), 20.0)
    heap.schedule(("stop", "d"), 40.0)

    assert heap.pop_due(30.0) == [("backoff", "a"), ("tick", "c"), ("timeout", "b")]
    assert len(heap) == 1
    assert ("stop", "d") in heap
    assert heap.pop_due(39.9) == []
    assert heap.pop_due(40.0) == [("stop", "d")]
    assert len(heap) == 0


def test_equal_deadlines_pop_in_scheduling_order() -> None:
    heap: TimerHeap[str] = TimerHeap()
    for key in ("x", "y", "z"):
        heap.schedule(key, 5.0)
    assert heap.pop_due(5.0) == ["x", "y", "z"]


def test_schedule_replaces_the_existing_timer_of_the_same_key() -> None:
    heap: TimerHeap[str] = TimerHeap()
    heap.schedule("svc", 10.0)
    heap.schedule("svc", 50.0)
    assert len(heap) == 1
    assert heap.deadline("svc") == 50.0
    assert heap.pop_due(20.0) == []  # the old 10.0 entry is stale and must not fire
    assert heap.next_deadline() == 50.0
    assert heap.pop_due(50.0) == ["svc"]


def test_rescheduling_earlier_moves_the_timer_forward() -> None:
    heap: TimerHeap[str] = TimerHeap()
    heap.schedule("svc", 50.0)
    heap.schedule("svc", 5.0)
    assert heap.pop_due(5.0) == ["svc"]
    assert heap.pop_due(100.0) == []  # the 50.0 entry went stale with the reschedule


def test_cancel_removes_the_timer_and_is_idempotent() -> None:
    heap: TimerHeap[str] = TimerHeap()
    heap.schedule("a", 1.0)
    heap.schedule("b", 2.0)
    assert heap.cancel("a") is True
    assert heap.cancel("a") is False
    assert heap.cancel("never") is False
    assert "a" not in heap
    assert heap.deadline("a") is None
    assert heap.next_deadline() == 2.0
    assert heap.pop_due(10.0) == ["b"]


def test_cancelled_then_rescheduled_key_fires_once_at_the_new_deadline() -> None:
    heap: TimerHeap[str] = TimerHeap()
    heap.schedule("a", 1.0)
    heap.cancel("a")
    heap.schedule("a", 3.0)
    assert heap.pop_due(2.0) == []
    assert heap.pop_due(3.0) == ["a"]
    assert heap.pop_due(100.0) == []


def test_timeout_is_time_to_next_deadline_clamped_at_zero_and_none_when_empty() -> None:
    heap: TimerHeap[str] = TimerHeap()
    assert heap.timeout(100.0) is None
    assert heap.next_deadline() is None
    heap.schedule("a", 105.0)
    assert heap.timeout(100.0) == pytest.approx(5.0)
    assert heap.timeout(110.0) == 0.0
    heap.cancel("a")
    assert heap.timeout(100.0) is None


def test_timeout_skips_cancelled_timers_at_the_top() -> None:
    heap: TimerHeap[str] = TimerHeap()
    heap.schedule("soon", 1.0)
    heap.schedule("later", 9.0)
    heap.cancel("soon")
    assert heap.timeout(0.0) == pytest.approx(9.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_deadline_is_rejected(bad: float) -> None:
    heap: TimerHeap[str] = TimerHeap()
    with pytest.raises(ValueError, match="finite"):
        heap.schedule("a", bad)
    assert len(heap) == 0


def test_heap_does_not_grow_without_bound_under_reschedule_churn() -> None:
    heap: TimerHeap[int] = TimerHeap()
    for key in range(10):
        heap.schedule(key, float(key))
    for i in range(100_000):
        heap.schedule(i % 10, 1000.0 + i)
    assert len(heap) == 10
    assert heap.heap_size <= 3 * 10 + 64 + 1
    due = heap.pop_due(math.inf)
    assert sorted(due) == list(range(10))
    # each key fires once, at its last deadline
    assert due == sorted(range(10), key=lambda k: 1000.0 + 99_990 + k)


def test_heap_does_not_grow_without_bound_under_cancel_churn() -> None:
    heap: TimerHeap[int] = TimerHeap()
    heap.schedule(-1, 1e9)
    for i in range(50_000):
        heap.schedule(i, float(i))
        heap.cancel(i)
    assert len(heap) == 1
    assert heap.heap_size <= 3 + 64 + 1
    assert heap.pop_due(1e9) == [-1]


def test_random_operations_match_a_plain_dict_model() -> None:
    rng = random.Random(1234)
    heap: TimerHeap[int] = TimerHeap()
    model: dict[int, float] = {}
    now = 0.0
    for _ in range(5000):
        op = rng.random()
        key = rng.randrange(50)
        if op < 0.5:
            deadline = now + rng.uniform(0, 100)
            heap.schedule(key, deadline)
            model[key] = deadline
        elif op < 0.7:
            assert heap.cancel(key) == (model.pop(key, None) is not None)
        else:
            now += rng.uniform(0, 20)
            expected = sorted((d, k) for k, d in model.items() if d <= now)
            got = heap.pop_due(now)
            assert sorted(got) == sorted(k for _, k in expected)
            assert [model[k] for k in got] == sorted(model[k] for k in got)
            for k in got:
                del model[k]
        assert len(heap) == len(model)
        assert heap.next_deadline() == (min(model.values()) if model else None)
        keys = heap.keys()
        assert set(keys) == set(model)
        assert [model[k] for k in keys] == sorted(model.values())


def test_timer_table_refuses_a_table_that_misses_a_kind() -> None:
    def ignore(name: str) -> None:
        pass

    handlers: dict[TimerKind, TimerHandler] = {k: ignore for k in TimerKind if k != "kill"}
    with pytest.raises(ValueError, match="no handler for timer kinds: kill"):
        TimerTable(handlers)


def test_timer_table_dispatches_by_kind_and_fails_loudly_on_an_unknown_kind() -> None:
    seen: list[tuple[TimerKind, str]] = []

    def handler(kind: TimerKind) -> TimerHandler:
        return lambda name: seen.append((kind, name))

    table = TimerTable({k: handler(k) for k in TimerKind})
    table.dispatch(TimerKey(TimerKind.RETRY, "svc"))
    table.dispatch(TimerKey(TimerKind.HOUSEKEEPING))
    assert seen == [(TimerKind.RETRY, "svc"), (TimerKind.HOUSEKEEPING, "")]
    with pytest.raises(UnknownTimer, match="bogus"):
        table.dispatch(("bogus", "svc"))  # type: ignore[arg-type]


def test_timer_keys_equal_the_plain_tuples_they_replace() -> None:
    heap: TimerHeap[TimerKey] = TimerHeap()
    heap.schedule(TimerKey(TimerKind.RETRY, "svc"), 1.0)
    assert ("retry", "svc") in heap
    assert heap.pop_due(1.0) == [TimerKey(TimerKind.RETRY, "svc")]
