"""mastercontrol.ctl.targets: which workloads `start|stop|restart` mean, and `--wait` (pure)."""

from __future__ import annotations

from typing import Any

from mastercontrol.ctl.targets import WAIT_POLL_SECONDS, Waited, select, wait

VIEWS: dict[str, dict[str, Any]] = {
    "web": {"tags": ["edge"]},
    "db": {"tags": ["store", "edge"]},
    "batch": {"tags": []},
    "@api": {"tags": []},
}


def test_all_is_every_workload_but_internal_services_unless_named() -> None:
    assert select(["all"], [], VIEWS).names == ["batch", "db", "web"]
    assert select(["all", "@api"], [], VIEWS).names == ["batch", "db", "web", "@api"]


def test_names_and_tags_combine_each_once_in_the_order_asked() -> None:
    chosen = select(["web", "batch"], ["edge", "store"], VIEWS)
    assert chosen.ok
    assert chosen.names == ["web", "batch", "db"]


def test_unknown_names_and_empty_tags_are_all_reported() -> None:
    chosen = select(["web", "nosuch", "other"], ["edge", "nosuchtag"], VIEWS)
    assert not chosen.ok
    assert chosen.unknown == ["nosuch", "other"]
    assert chosen.empty_tags == ["nosuchtag"]


def test_all_of_no_workloads_is_empty_but_fine() -> None:
    chosen = select(["all"], [], {})
    assert chosen.ok and chosen.names == []


class Script:
    """States served one poll after another, and a clock that advances with each sleep."""

    def __init__(self, polls: list[dict[str, str | None]]) -> None:
        self.polls = polls
        self.t = 0.0
        self.fetches = 0

    def fetch(self) -> dict[str, dict[str, Any]]:
        states = self.polls[min(self.fetches, len(self.polls) - 1)]
        self.fetches += 1
        return {n: {"state": s} for n, s in states.items() if s is not None}

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def run(
    up: bool, names: list[str], polls: list[dict[str, str | None]], timeout: float = 10
) -> tuple[Waited, Script]:
    script = Script(polls)
    return wait(up, names, script.fetch, timeout, lambda: script.t, script.sleep), script


def test_stop_wait_ends_when_every_name_left_the_active_states() -> None:
    polls: list[dict[str, str | None]] = [
        {"a": "STOPPING", "b": "RUNNING"},
        {"a": "STOPPED", "b": "STOPPING"},
        {"a": "STOPPED", "b": "COMPLETED"},
    ]
    waited, script = run(False, ["a", "b"], polls)
    assert waited.ok and script.fetches == 3
    assert waited.states == {"a": "STOPPED", "b": "COMPLETED"}


def test_up_wait_fails_a_workload_that_did_not_come_up() -> None:
    polls: list[dict[str, str | None]] = [
        {"a": "STARTING", "b": "STOPPING", "c": "STARTING"},
        {"a": "RUNNING", "b": "STARTING", "c": "BACKOFF"},
        {"a": "RUNNING", "b": "EXITED", "c": "BACKOFF"},
    ]
    waited, _ = run(True, ["a", "b", "c"], polls)
    assert waited.failed == ["c"] and not waited.pending and not waited.ok


def test_a_workload_removed_while_waiting_has_settled() -> None:
    waited, _ = run(False, ["a"], [{"a": "STOPPING"}, {"a": None}])
    assert waited.ok and waited.states == {"a": "REMOVED"}


def test_timeout_leaves_the_unsettled_names_pending() -> None:
    waited, script = run(False, ["a", "b"], [{"a": "STOPPED", "b": "STOPPING"}], timeout=1.0)
    assert waited.pending == ["b"] and not waited.ok
    assert script.t <= 1.0 + WAIT_POLL_SECONDS
