"""The central's reading of a heartbeat body: what is accepted, what is refused, what is kept."""

from __future__ import annotations

from typing import Any

import pytest

from mastercontrol.fleet.heartbeat import build_payload
from mastercontrol.fleet.intake import HeartbeatInvalid, parse_heartbeat


def body(**over: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "client_name": "pi-01",
        "sent_at": 1_700_000_000.5,
        "daemon_version": "0.9.0",
        "release": "20261201-abc",
        "api_url": "http://10.0.0.5:9100/",
        "workloads": [
            {"name": "web", "state": "RUNNING", "pid": 42, "version": "1.0", "runs": 3,
             "restarts": 0, "last_exit": {"code": 0, "reason": "exit"}, "extra": "dropped"},
            {"name": "@client-api", "state": "FATAL", "pid": None, "runs": 9, "restarts": 9},
        ],
        "system": {
            "cpu_percent": 12.5,
            "load": [0.5, 0.4, 0.3],
            "memory": {"total_bytes": 1, "available_bytes": 1, "used_percent": 40.0},
            "disk": {"state": {"path": "/", "used_percent": 70.0}, "log": None,
                     "other": {"path": "/x", "used_percent": 80.0}},
            "uptime_seconds": 100.0,
            "temperature_c": None,
            "throttling": None,
        },
        "unknown_future_field": [1, 2, 3],
    }  # fmt: skip
    b.update(over)
    return b


def test_a_full_heartbeat_is_kept_with_only_the_known_fields() -> None:
    hb = parse_heartbeat(body())
    assert hb.client_name == "pi-01"
    assert hb.api_url == "http://10.0.0.5:9100"
    assert hb.workloads[0] == {
        "name": "web", "state": "RUNNING", "pid": 42, "version": "1.0", "runs": 3,
        "restarts": 0, "last_exit": {"code": 0, "reason": "exit"}, "internal": False,
        "started_at": None,
    }  # fmt: skip
    assert hb.fatal_workloads() == {"@client-api"}


def test_a_workloads_start_time_is_kept_when_it_is_a_finite_number() -> None:
    # The dashboard shows uptime as sent_at - started_at (both the device's clock).
    for raw, kept in ((1700000000.5, 1700000000.5), (12, 12.0), ("soon", None), (True, None),
                      (float("inf"), None)):  # fmt: skip
        workloads = [{"name": "w", "state": "RUNNING", "started_at": raw}]
        assert parse_heartbeat(body(workloads=workloads)).workloads[0]["started_at"] == kept


def test_the_history_sample_is_a_few_numbers() -> None:
    assert parse_heartbeat(body()).metrics() == {
        "cpu_percent": 12.5,
        "memory_used_percent": 40.0,
        "disk_used_percent": 80.0,
        "temperature_c": None,
        "load1": 0.5,
    }


def test_a_minimal_heartbeat_is_enough() -> None:
    hb = parse_heartbeat({"client_name": "a", "sent_at": 0})
    assert hb.workloads == () and hb.system == {} and hb.release is None
    assert set(hb.metrics().values()) == {None}


@pytest.mark.parametrize(
    ("over", "problem"),
    [
        ({"client_name": "../etc"}, "client_name"),
        ({"client_name": 5}, "client_name"),
        ({"sent_at": "now"}, "sent_at"),
        ({"sent_at": True}, "sent_at"),
        ({"sent_at": -1}, "sent_at"),
        ({"release": ["x"]}, "release"),
        ({"daemon_version": "v" * 300}, "daemon_version"),
        ({"api_url": "file:///etc/passwd"}, "api_url"),
        ({"api_url": "http://h:99999"}, "api_url"),
        ({"workloads": {"a": 1}}, "workloads"),
        ({"workloads": [{"name": "a"}]}, "workloads[0].state"),
        ({"workloads": [{"state": "RUNNING"}]}, "workloads[0].name"),
        ({"workloads": [{"name": "a", "state": "RUNNING", "pid": "1"}]}, "workloads[0].pid"),
        ({"system": [1]}, "system"),
    ],
)
def test_each_bad_field_is_named(over: dict[str, Any], problem: str) -> None:
    with pytest.raises(HeartbeatInvalid) as info:
        parse_heartbeat(body(**over))
    assert any(p.startswith(problem) for p in info.value.problems), info.value.problems


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(HeartbeatInvalid) as info:
        parse_heartbeat({"client_name": "", "sent_at": None, "system": 3})
    assert len(info.value.problems) == 3


@pytest.mark.parametrize("raw", [None, [], "x", 3])
def test_a_body_that_is_not_an_object_is_refused(raw: Any) -> None:
    with pytest.raises(HeartbeatInvalid, match="JSON object"):
        parse_heartbeat(raw)


def test_a_huge_system_object_is_cut_down() -> None:
    system = {f"k{i}": {"deep": {"deeper": {"deepest": "x" * 10_000}}} for i in range(500)}
    hb = parse_heartbeat(body(system=system))
    assert len(hb.system) == 64
    assert hb.system["k0"] == {"deep": {"deeper": None}}


def test_what_the_heartbeat_sender_builds_is_accepted() -> None:
    # The sender's own builder (fleet/heartbeat.py), with a `list` view as the master gives it.
    view = {"name": "@client-api", "state": "RUNNING", "pid": 9, "version": None, "runs": 1,
            "restarts": 0, "last_exit": None, "internal": True, "tags": ["x"]}  # fmt: skip
    body = build_payload(
        client_name="pi-01", sent_at=1_700_000_000.123, daemon_version="0.9", release=None,
        workloads=[view], system={"cpu_percent": 1.0, "load": [0.1, 0.2, 0.3]},
        api_url="http://127.0.0.1:9100", master={"pid": 1, "uptime_seconds": 5.0},
    )  # fmt: skip
    hb = parse_heartbeat(body)
    assert hb.client_name == "pi-01" and hb.workloads[0]["internal"] is True
    assert hb.metrics()["load1"] == 0.1
