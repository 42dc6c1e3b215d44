"""fleet/heartbeat.py: the heartbeat body and the send/backoff/log policy, as pure logic
(injected clock and random source; nothing sleeps)."""

from __future__ import annotations

import json
import urllib.error
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from mastercontrol.fleet.heartbeat import (
    JITTER,
    RETRY_AFTER_JITTER,
    WORKLOAD_KEYS,
    HeartbeatPolicy,
    build_payload,
    heartbeat_url,
    retry_after_seconds,
    workload_entry,
)
from mastercontrol.fleet.heartbeat_service import HeartbeatService, Settings, failure_reason
from mastercontrol.ipc.client import MasterClient


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fixed(value: float) -> Any:
    return lambda: value


VIEW = {
    "name": "collector",
    "type": "agent",
    "state": "RUNNING",
    "pid": 4242,
    "version": "1.2.0",
    "runs": 7,
    "restarts": 2,
    "last_exit": {"exit_code": 0, "signal": None, "reason": "exit", "text": "", "at": 1.0},
    "tags": ["data"],
    "metrics": {"rss_bytes": 1},
}


# --- payload ------------------------------------------------------------------------------------


def payload(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "client_name": "pi-7",
        "sent_at": 1764583200.123456,
        "daemon_version": "0.1.0",
        "release": "20261201-abc",
        "workloads": [VIEW],
        "system": {"cpu_percent": 3.5},
        "api_url": "http://10.0.0.7:9100",
        "master": {"pid": 10, "uptime_seconds": 5.5, "version": "0.1.0"},
    }
    args.update(overrides)
    return build_payload(**args)


def test_the_body_carries_every_field_the_issue_names() -> None:
    body = payload()
    for key in ("client_name", "sent_at", "daemon_version", "release", "workloads"):
        assert key in body
    assert body["system"] == {"cpu_percent": 3.5}
    assert body["api_url"] == "http://10.0.0.7:9100"
    assert body["sent_at"] == 1764583200.123
    assert body["master"] == {"reachable": True, "pid": 10, "uptime_seconds": 5.5}
    json.dumps(body)


def test_a_workload_carries_its_state_and_counters_only() -> None:
    entry = payload()["workloads"][0]
    assert set(entry) == {*WORKLOAD_KEYS, "internal"}
    assert entry["name"] == "collector" and entry["state"] == "RUNNING" and entry["pid"] == 4242
    assert entry["runs"] == 7 and entry["restarts"] == 2 and entry["version"] == "1.2.0"
    assert entry["last_exit"]["reason"] == "exit"
    assert entry["internal"] is False


def test_an_internal_workload_is_marked_and_missing_keys_are_null() -> None:
    entry = workload_entry({"name": "@heartbeat", "state": "RUNNING", "internal": True})
    assert entry["internal"] is True
    assert entry["pid"] is None and entry["last_exit"] is None


def test_a_master_that_did_not_answer_still_gives_a_heartbeat() -> None:
    body = payload(master=None, workloads=[])
    assert body["master"] == {"reachable": False, "pid": None, "uptime_seconds": None}
    assert body["workloads"] == []


@pytest.mark.parametrize("base", ["http://c:8080", "http://c:8080/", "http://c:8080//"])
def test_the_heartbeat_url_is_under_api_v1(base: str) -> None:
    assert heartbeat_url(base) == "http://c:8080/api/v1/heartbeat"


# --- policy: the steady state -------------------------------------------------------------------


@pytest.mark.parametrize("r", [0.0, 0.25, 0.5, 0.999999])
def test_while_the_central_answers_the_delay_is_the_interval_within_ten_percent(r: float) -> None:
    policy = HeartbeatPolicy(30.0, rand=fixed(r))
    delay = policy.succeeded().delay
    assert 27.0 <= delay <= 33.0


def test_jitter_spans_the_whole_band_and_only_it() -> None:
    assert HeartbeatPolicy(30.0, rand=fixed(0.0)).succeeded().delay == pytest.approx(27.0)
    assert HeartbeatPolicy(30.0, rand=fixed(0.5)).succeeded().delay == pytest.approx(30.0)
    top = HeartbeatPolicy(30.0, rand=fixed(1.0 - 1e-12)).succeeded().delay
    assert top == pytest.approx(33.0) and top < 33.0
    assert pytest.approx(0.10) == JITTER


def test_jitter_of_the_real_random_source_stays_in_bounds() -> None:
    policy = HeartbeatPolicy(10.0)
    delays = [policy.succeeded().delay for _ in range(2000)]
    assert all(9.0 <= d <= 11.0 for d in delays)
    assert max(delays) - min(delays) > 1.0  # it does spread


def test_successes_log_nothing() -> None:
    policy = HeartbeatPolicy(5.0)
    assert all(policy.succeeded().log is None for _ in range(5))


@pytest.mark.parametrize("interval", [0.0, -1.0])
def test_a_nonpositive_interval_is_refused(interval: float) -> None:
    with pytest.raises(ValueError):
        HeartbeatPolicy(interval)


# --- policy: backoff ----------------------------------------------------------------------------


def test_backoff_starts_at_the_interval_and_doubles_up_to_ten_intervals() -> None:
    policy = HeartbeatPolicy(10.0, rand=fixed(0.5))  # 0.5: no jitter
    delays = [policy.failed("refused").delay for _ in range(8)]
    assert delays == [10.0, 20.0, 40.0, 80.0, 100.0, 100.0, 100.0, 100.0]


def test_backoff_is_capped_at_300_seconds_for_long_intervals() -> None:
    policy = HeartbeatPolicy(60.0, rand=fixed(0.5))
    delays = [policy.failed("timeout").delay for _ in range(6)]
    assert delays == [60.0, 120.0, 240.0, 300.0, 300.0, 300.0]
    assert policy.cap == 300.0
    assert HeartbeatPolicy(1.0).cap == 10.0


@pytest.mark.parametrize("r", [0.0, 0.999999])
def test_backoff_is_jittered_but_never_above_the_cap(r: float) -> None:
    policy = HeartbeatPolicy(10.0, rand=fixed(r))
    delays = [policy.failed("x").delay for _ in range(10)]
    assert all(d <= policy.cap for d in delays)
    assert 9.0 <= delays[0] <= 11.0


def test_a_very_long_outage_does_not_overflow() -> None:
    policy = HeartbeatPolicy(30.0, rand=fixed(0.5))
    for _ in range(5000):
        nxt = policy.failed("down")
    assert nxt.delay == 300.0
    assert policy.failures == 5000


def test_success_after_an_outage_returns_to_the_interval() -> None:
    policy = HeartbeatPolicy(10.0, rand=fixed(0.5))
    for _ in range(4):
        policy.failed("down")
    assert policy.succeeded().delay == 10.0
    assert policy.failed("down again").delay == 10.0  # a new outage starts from the interval


# --- policy: one log line per outage ------------------------------------------------------------


def test_an_outage_logs_once_at_its_start_and_once_at_its_end() -> None:
    clock = FakeClock()
    policy = HeartbeatPolicy(10.0, target="http://c:8080", clock=clock, rand=fixed(0.5))
    logs: list[str | None] = [policy.succeeded().log]
    for _ in range(6):
        nxt = policy.failed("connection refused")
        logs.append(nxt.log)
        clock.now += nxt.delay
    logs.append(policy.succeeded().log)
    logs.append(policy.succeeded().log)
    lines = [line for line in logs if line]
    assert len(lines) == 2
    start, end = lines
    assert "http://c:8080" in start and "connection refused" in start
    assert "6 failed tries" in end and "over 350s" in end  # 10+20+40+80+100+100
    assert logs[1] == start and logs[7] == end


def test_each_outage_gets_its_own_pair_of_lines() -> None:
    policy = HeartbeatPolicy(1.0, clock=FakeClock())
    lines = []
    for _ in range(3):
        lines += [policy.failed("down").log, policy.failed("down").log, policy.succeeded().log]
    assert sum(1 for line in lines if line) == 6
    assert "1 failed try" not in (lines[2] or "")
    assert "2 failed tries" in (lines[2] or "")


# --- the service's failure reasons (pure) -------------------------------------------------------


def test_failure_reasons_are_short_and_name_the_cause() -> None:
    refused = urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
    assert failure_reason(refused) == "Connection refused"
    http = urllib.error.HTTPError("http://c/api/v1/heartbeat", 401, "Unauthorized", Message(), None)
    assert failure_reason(http) == "HTTP 401 Unauthorized"
    assert failure_reason(TimeoutError()) == "timed out"
    assert failure_reason(ConnectionResetError(104, "Connection reset by peer")) == (
        "Connection reset by peer"
    )
    assert failure_reason(urllib.error.URLError("unknown url type: ftp")) == "unknown url type: ftp"


# --- the service loop, with an injected sender, clock and sleep ---------------------------------


class Scripted:
    """A HeartbeatService whose POSTs fail or succeed as `outcomes` says, on a fake clock."""

    def __init__(self, tmp_path: Path, outcomes: list[BaseException | None], post_seconds: float):
        self.clock = FakeClock()
        self.slept: list[float] = []
        self.sent: list[dict[str, Any]] = []
        results = iter(outcomes)

        def send(body: dict[str, Any]) -> None:
            self.clock.now += post_seconds
            self.sent.append(body)
            error = next(results)
            if error is not None:
                raise error

        def sleep(seconds: float) -> None:
            self.slept.append(seconds)
            self.clock.now += seconds

        settings = Settings("pi-1", "http://c/api/v1/heartbeat", 10.0, None, "http://pi-1:9100")
        self.service = HeartbeatService(
            settings,
            MasterClient(tmp_path / "no-daemon.sock", timeout=1.0),
            {"state": tmp_path},
            send=send,
            clock=self.clock,
            sleep=sleep,
        )
        self.service.policy.rand = lambda: 0.5  # no backoff jitter: exact delays


def test_the_service_loop_sends_at_once_then_backs_off_and_counts_its_own_time(
    tmp_path: Path,
) -> None:
    refused = OSError(111, "Connection refused")
    run = Scripted(tmp_path, [None, refused, OSError(111, "x"), None], post_seconds=0.25)
    service = run.service
    service.run(beats=4)
    assert len(run.sent) == 4  # the first went out before any sleep
    # interval 10 s after the success, then backoff 10 s, 20 s; minus the POST's own 0.25 s.
    assert run.slept == [9.75, 9.75, 19.75]
    assert all(b["master"]["reachable"] is False for b in run.sent)
    assert service.master_down is True
    assert service.policy.failures == 0


# --- a busy central's Retry-After ---------------------------------------------------------------


def test_retry_after_is_read_as_seconds_or_an_http_date_else_ignored() -> None:
    now = 1_764_583_200.0  # Mon, 01 Dec 2025 10:00:00 GMT
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds(" 0 ", now) == 0.0
    assert retry_after_seconds("Mon, 01 Dec 2025 10:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Mon, 01 Dec 2025 09:00:00 GMT", now) == 0.0  # past: at once
    for bad in (None, "", "-3", "1.5", "soon", "Mon, 01 Dec 2025 10:00:30"):
        assert retry_after_seconds(bad, now) is None, bad


@pytest.mark.parametrize("r", [0.0, 0.5, 1.0 - 1e-12])
def test_a_retry_after_replaces_the_backoff_stretched_up_to_half_never_shortened(r: float) -> None:
    policy = HeartbeatPolicy(10.0, target="c", rand=fixed(r))
    first = policy.failed("HTTP 503 Service Unavailable", retry_after=7.0)
    assert 7.0 <= first.delay <= 7.0 * (1 + RETRY_AFTER_JITTER)
    assert first.delay == pytest.approx(7.0 * (1 + RETRY_AFTER_JITTER * r))
    assert first.log is not None and "(retry after 7s)" in first.log
    # Bounded: a central asking for an hour gets the backoff cap (100 s here), jittered.
    far = policy.failed("HTTP 503 Service Unavailable", retry_after=3600.0)
    assert far.delay == pytest.approx(policy.cap * (1 + RETRY_AFTER_JITTER * r))
    assert far.log is None  # still one line per outage
    assert policy.failed("refused").delay <= policy.cap  # without one: the backoff again


def test_the_service_waits_out_a_503s_retry_after(tmp_path: Path) -> None:
    headers = Message()
    headers["Retry-After"] = "42"
    busy = urllib.error.HTTPError("http://c/api/v1/heartbeat", 503, "Busy", headers, None)
    no_header = urllib.error.HTTPError("http://c/api/v1/heartbeat", 503, "Busy", Message(), None)
    refused_with = urllib.error.HTTPError("http://c/api/v1/heartbeat", 401, "No", headers, None)
    run = Scripted(tmp_path, [busy, no_header, refused_with, None], post_seconds=0.0)
    run.service.run(beats=4)
    # 42 s as asked (+25 % at rand 0.5); then the backoff (20 s: the second failure); a 401's
    # header is not a busy central's: backoff (40 s).
    assert run.slept == [52.5, 20.0, 40.0]
