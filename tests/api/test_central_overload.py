"""Load shedding of the central (api/overload.py): the decision as pure logic, the 503 through
the app in process, a real Waitress server at its connection mark, and a real flush blocked on
a real sqlite lock."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import waitress.server

from mastercontrol.api.central_service import CENTRAL_TUNING, central_shedder
from mastercontrol.api.overload import MAX_RETRY_AFTER, MIN_RETRY_AFTER, Shedder, with_load_shedding
from mastercontrol.config.model import CentralSettings
from mastercontrol.fleet.intake import parse_heartbeat
from tests.api.test_central_app import OPERATOR, Rig, rig
from tests.api.wsgi import call

__all__ = ["rig"]  # the fixture, imported to be used here


class Gauges:
    def __init__(self) -> None:
        self.queue = 0.0
        self.conns = 0.0
        self.flush = 0.0
        self.now = 1000.0


def shedder(g: Gauges) -> Shedder:
    s = Shedder(max_queue=10, max_connections=50, max_flush_seconds=3.0, clock=lambda: g.now)
    s.queue_depth = lambda: g.queue
    s.connections = lambda: g.conns
    s.flush_running_for = lambda: g.flush
    return s


def test_each_mark_sheds_and_below_them_nothing_is_shed() -> None:
    g = Gauges()
    s = shedder(g)
    g.queue, g.conns, g.flush = 9, 49, 3.0
    assert s.overloaded() is None and s.verdict() is None
    waits = []
    for attr, value, why in (("queue", 10, "queue"), ("conns", 50, "connections"),
                             ("flush", 3.01, "flush")):  # fmt: skip
        g.queue, g.conns, g.flush = 9, 49, 3.0
        setattr(g, attr, value)
        assert s.overloaded() == why
        waits.append(s.verdict())
    # 1 taken (at least 1 a second), then 1, 2, 3 shed: come back in at least 2 s, then 3 s.
    assert waits == [MIN_RETRY_AFTER, MIN_RETRY_AFTER, 3] and s.shed_total == 3


def test_retry_after_grows_with_what_was_shed_against_what_was_taken_and_is_capped() -> None:
    g = Gauges()
    s = shedder(g)
    for _ in range(20):  # 20 taken in this window: ~10 a second
        s.verdict()
    g.queue = 10
    waits = [s.verdict() or 0 for _ in range(1000)]
    assert waits[0] == MIN_RETRY_AFTER
    assert waits == sorted(waits)  # more shed, longer waits
    assert waits[-1] == MAX_RETRY_AFTER  # 1000 shed at ~10/s would be 100 s: capped
    assert waits[100] == 11  # 101 shed over 10 a second
    g.now += 10  # the window has passed: the counts start again
    assert s.verdict() == MIN_RETRY_AFTER


def test_a_shed_heartbeat_is_a_json_503_with_retry_after_and_is_counted(rig: Rig) -> None:
    g = Gauges()
    s = shedder(g)
    app = with_load_shedding(rig.app, s, rig.central)
    body = {"client_name": "pi-01", "sent_at": rig.clock.now}

    def beat() -> Any:
        return call(app, "POST", "/api/v1/heartbeat", json_body=body, token="tok-1")

    assert beat().status == 200
    g.conns = 50
    r = beat()
    assert (r.status, r.error_code) == (503, "overloaded")
    assert r.headers["retry-after"] == str(MIN_RETRY_AFTER)
    assert r.json()["error"]["retry_after"] == MIN_RETRY_AFTER
    assert r.headers["content-type"] == "application/json"
    # Only heartbeats are shed: the operator still sees the fleet, and the shedding itself.
    fleet = call(app, "GET", "/api/v1/fleet", token=OPERATOR)
    assert fleet.status == 200 and fleet.json()["by_status"]["online"] == 1
    metrics = call(app, "GET", "/metrics", token=OPERATOR).body.decode()
    assert 'mastercontrol_central_heartbeats_rejected_total{reason="overloaded"} 1' in metrics
    g.conns = 0
    assert beat().status == 200


def post_heartbeat(port: int) -> tuple[int, dict[str, str], Any]:
    data = json.dumps({"client_name": "pi-01", "sent_at": time.time()}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/heartbeat", data=data,
                                 method="POST")  # fmt: skip
    req.add_header("Authorization", "Bearer tok-1")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as reply:
            return reply.status, dict(reply.headers), json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


def test_a_real_waitress_at_its_connection_mark_sheds_then_takes_heartbeats_again(
    rig: Rig,
) -> None:
    """The service's own shedder and tuning: idle connections up to the mark, then a real
    heartbeat over HTTP is a 503; once they are closed, it is accepted."""
    s = central_shedder(rig.central.coalescer.flush_running_for, CentralSettings())
    server = waitress.server.create_server(
        with_load_shedding(rig.app, s, rig.central),
        host="127.0.0.1", port=0, **CENTRAL_TUNING,
    )  # fmt: skip
    s.attach_waitress(server)
    port = server.effective_port
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    idle: list[socket.socket] = []
    try:
        assert post_heartbeat(port)[0] == 200
        for _ in range(s.max_connections):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        deadline = time.monotonic() + 30
        while s.connections() < s.max_connections and time.monotonic() < deadline:
            time.sleep(0.05)  # Waitress accepts them one loop turn at a time
        status, headers, body = post_heartbeat(port)
        assert status == 503 and body["error"]["code"] == "overloaded"
        assert int(headers["Retry-After"]) >= MIN_RETRY_AFTER
        for sock in idle:
            sock.close()
        idle.clear()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and post_heartbeat(port)[0] != 200:
            time.sleep(0.1)
        assert post_heartbeat(port)[0] == 200
    finally:
        for sock in idle:
            sock.close()
        server.close()
        thread.join(timeout=10)


def test_a_flush_blocked_on_the_fleet_db_counts_as_behind_until_it_ends(rig: Rig) -> None:
    coalescer = rig.central.coalescer
    assert coalescer.flush_running_for() == 0.0
    coalescer.ingest(parse_heartbeat({"client_name": "pi-01", "sent_at": rig.clock.now}))
    holder = sqlite3.connect(rig.central.store.path, isolation_level=None)  # type: ignore[attr-defined]
    holder.execute("BEGIN EXCLUSIVE")
    errors: list[BaseException] = []

    def flush() -> None:
        try:
            coalescer.flush()
        except BaseException as exc:  # the busy timeout, if the lock outlives it
            errors.append(exc)

    flusher = threading.Thread(target=flush)
    flusher.start()
    try:
        deadline = time.monotonic() + 4
        while coalescer.flush_running_for() == 0.0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert coalescer.flush_running_for() > 0.0  # running, held up by the lock
        s = central_shedder(
            coalescer.flush_running_for, CentralSettings(flush_interval_seconds=0.0001)
        )
        s.max_flush_seconds = 0.0
        assert s.overloaded() == "flush"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        flusher.join(timeout=30)
    assert coalescer.flush_running_for() == 0.0
    assert errors == [] and rig.central.store.load_clients()[0].name == "pi-01"
