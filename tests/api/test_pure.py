"""Pure logic of the API package: token check, JSON depth, problem parsing, Prometheus text."""

from __future__ import annotations

import pytest

from mastercontrol.api.auth import TokenCheck
from mastercontrol.api.body import MAX_DEPTH, depth
from mastercontrol.api.errors import APIError, from_ipc, parse_problem
from mastercontrol.api.metrics import escape, exposition
from mastercontrol.errors import IPCError


def test_token_check_accepts_only_the_token() -> None:
    check = TokenCheck("abc123")
    assert check.allows("Bearer abc123")
    assert check.allows("  bearer   abc123 ")
    assert not check.allows("Bearer abc1234")
    assert not check.allows("Bearer \u00e9")
    assert not check.allows("x" * 10_000)
    assert "abc123" not in repr(check)


@pytest.mark.parametrize("token", ["", "has space", "caf\u00e9", "tab\there"])
def test_a_token_that_cannot_travel_in_a_header_is_refused(token: str) -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        TokenCheck(token)


def test_depth_counts_containers_without_recursion() -> None:
    assert depth(1) == 0
    assert depth({"files": {"a": "b"}}) == 2
    value: list[object] = []
    for _ in range(10_000):
        value = [value]
    assert depth(value) > MAX_DEPTH  # stops early, no RecursionError


def test_problem_strings_become_objects() -> None:
    assert parse_problem("/etc/mc/a.yaml:4: bogus: unknown field") == {
        "file": "/etc/mc/a.yaml",
        "line": 4,
        "field": "bogus",
        "message": "unknown field",
    }
    assert parse_problem("/etc/mc/a.yaml: cannot read: Permission denied")["line"] is None
    free = parse_problem("a.yaml:2: duplicate name 'x' (also in b.yaml)")
    assert free["line"] == 2 and free["field"] is None


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("unknown_workload", 404),
        ("invalid_config", 422),
        ("disabled", 409),
        ("shutting_down", 503),
        ("internal", 502),
        ("permission_denied", 502),
        ("bad_reply", 502),
        ("no_rollback", 409),
    ],
)
def test_ipc_codes_map_to_http(code: str, status: int) -> None:
    err = from_ipc(IPCError(code, "msg"))
    assert isinstance(err, APIError) and err.status_code == status


def test_label_values_are_escaped() -> None:
    assert escape('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_exposition_has_help_and_type_once_per_family() -> None:
    # last_duration: what `list` with metrics gives, the newest measured run (None: no run
    # has ended yet).
    views = [
        {"name": "a", "state": "RUNNING", "restarts": 2, "runs": 3, "metrics": None,
         "last_duration": 2.5},
        {"name": "b", "state": "FATAL", "restarts": 0, "runs": 1, "metrics": None,
         "last_duration": None},
    ]  # fmt: skip
    system = {"load": [0.5, 0.25, 0.0], "memory": {"total_bytes": 1024}, "disk": {"log": None}}
    text = exposition({"daemon": {"version": "1"}, "workloads": views}, system)
    assert text.count("# TYPE mastercontrol_workload_restarts_total counter") == 1
    assert 'mastercontrol_workload_restarts_total{name="a"} 2' in text
    assert 'mastercontrol_workload_last_run_duration_seconds{name="a"} 2.5' in text
    assert 'last_run_duration_seconds{name="b"}' not in text  # still running: no duration
    assert "node_load5 0.25" in text
    assert "node_filesystem" not in text  # an unreadable disk is left out
    assert text.endswith("\n")
