"""The central API in process (wsgiref.validate) over a real sqlite fleet DB and a fake clock;
remote control against real HTTP servers on 127.0.0.1 standing in for a client's API."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mastercontrol.api.central_app import Central, create_central_app
from mastercontrol.api.central_heartbeat import with_heartbeat_fast_path
from mastercontrol.fleet.coalescer import Coalescer
from mastercontrol.fleet.fleetstore import SqliteFleetStore
from mastercontrol.fleet.liveness import LivenessRule
from mastercontrol.fleet.roster import Roster, RosterEntry
from tests.api.wsgi import Reply, call

OPERATOR = "operator-token"
START = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    app: Any
    central: Central
    clock: Clock

    def hb(self, name: str, token: str, **over: Any) -> Reply:
        body: dict[str, Any] = {
            "client_name": name,
            "sent_at": self.clock.now,
            "release": "r1",
            "daemon_version": "0.9",
            "system": {"cpu_percent": 3.0},
        }
        body.update(over)
        return call(self.app, "POST", "/api/v1/heartbeat", json_body=body, token=token)

    def get(self, path: str) -> Reply:
        return call(self.app, "GET", path, token=OPERATOR)


def entries(api_url: str | None = None) -> list[RosterEntry]:
    return [
        RosterEntry("pi-01", "127.0.0.1", tags=("lab",), token="tok-1", api_url=api_url),
        RosterEntry("pi-02", "127.0.0.1", tags=("prod",), token="tok-2"),
        RosterEntry("pi-03", "10.9.9.9"),
    ]


def build(tmp_path: Path, roster_entries: list[RosterEntry], accept: bool = False) -> Rig:
    clock = Clock()
    store = SqliteFleetStore(tmp_path / "fleet.db")
    rule = LivenessRule(stale_after=90, offline_after=300, started_at=START)
    # One fake clock for both: the tests move "now" and the silence alike.
    coalescer = Coalescer(store, rule, sample_every=300, clock=clock, monotonic=clock)
    coalescer.load()
    coalescer.set_inventory(roster_entries)
    central = Central(
        coalescer=coalescer, store=store, roster=Roster(roster_entries, OPERATOR, accept),
        operator_token=OPERATOR, client_timeout=1.0, clock=clock,
    )  # fmt: skip
    # As the service serves it: accepted heartbeats never reach Bottle, the rest does.
    return Rig(with_heartbeat_fast_path(create_central_app(central), central), central, clock)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = build(tmp_path, entries())
    yield r
    r.central.store.close()


# -- heartbeats --------------------------------------------------------------------------------


def test_a_heartbeat_is_visible_at_once_and_on_disk_after_the_flush(rig: Rig) -> None:
    assert rig.hb("pi-01", "tok-1").status == 200
    view = rig.get("/api/v1/clients/pi-01").json()
    assert view["status"] == "online" and view["release"] == "r1"
    assert rig.central.store.load_clients() == []  # not flushed yet
    rig.central.coalescer.flush()
    seen = {c.name: c.last_seen for c in rig.central.store.load_clients()}
    assert seen["pi-01"] == START


def test_an_unknown_token_is_401_before_the_body_is_read(rig: Rig) -> None:
    for token in ("nope", "x" * 10_000):
        r = call(rig.app, "POST", "/api/v1/heartbeat", body=b"not json", token=token,
                 headers={"Content-Type": "text/plain"})  # fmt: skip
        assert (r.status, r.error_code) == (401, "unauthorized")
    r = call(rig.app, "POST", "/api/v1/heartbeat", json_body={"client_name": "pi-01"})
    assert r.status == 401 and "bearer" in r.headers["www-authenticate"].lower()


def test_an_integer_too_large_for_a_float_is_422_or_dropped_never_500(rig: Rig) -> None:
    # JSON has no integer limit; float(10**400) raised OverflowError (a 500 from the route).
    huge = 10**400
    r = rig.hb("pi-01", "tok-1", sent_at=huge)
    assert (r.status, r.error_code) == (422, "invalid_heartbeat")
    workloads = [{"name": "w", "state": "RUNNING", "started_at": huge}]
    r = rig.hb("pi-01", "tok-1", system={"cpu_percent": huge, "x": -huge}, workloads=workloads)
    assert r.status == 200
    view = rig.get("/api/v1/clients/pi-01").json()
    assert view["system"] == {"cpu_percent": None, "x": None}
    assert view["metrics"]["cpu_percent"] is None
    assert view["workloads"][0]["started_at"] is None


def test_a_non_ascii_authorization_header_is_401_not_500(rig: Rig) -> None:
    # WSGI hands headers over as latin-1 text; Bottle's get_header re-decodes them and raised.
    for method, path in (("POST", "/api/v1/heartbeat"), ("GET", "/api/v1/fleet")):
        r = call(rig.app, method, path, token="caf\u00e9", json_body={"client_name": "pi-01"})
        assert (r.status, r.error_code) == (401, "unauthorized"), (method, path)


def test_another_clients_token_is_403_before_the_body_is_validated(rig: Rig) -> None:
    r = rig.hb("pi-01", "tok-2", sent_at="garbage")
    assert (r.status, r.error_code) == (403, "forbidden")
    r = rig.hb("pi-02", OPERATOR)  # pi-02 has its own token: the shared one is not it
    assert r.status == 403
    assert rig.hb("pi-03", OPERATOR).status == 200  # no own token: the shared one


def test_unlisted_names_are_refused_unless_accepted(rig: Rig, tmp_path: Path) -> None:
    r = rig.hb("stranger", OPERATOR)
    assert (r.status, r.error_code) == (403, "unlisted_client")
    open_rig = build(tmp_path / "open", entries(), accept=True)
    assert open_rig.hb("stranger", OPERATOR).status == 200
    view = open_rig.get("/api/v1/clients/stranger").json()
    assert view["in_inventory"] is False and view["control_url"] is None
    open_rig.central.store.close()


def test_an_invalid_heartbeat_is_422_with_every_problem(rig: Rig) -> None:
    r = rig.hb("pi-01", "tok-1", sent_at=None, workloads="x")
    assert (r.status, r.error_code) == (422, "invalid_heartbeat")
    assert len(r.json()["error"]["problems"]) == 2
    assert rig.get("/api/v1/clients/pi-01").json()["status"] == "never_seen"


@pytest.mark.parametrize(
    ("body", "ctype", "status"),
    [
        (b"{", "application/json", 400),
        (b"[" * 100 + b"]" * 100, "application/json", 400),
        (b"{}", "text/plain", 415),
        (b"{" + b" " * 300_000 + b"}", "application/json", 413),
        (b"[]", "application/json", 422),
    ],
)
def test_bad_bodies_are_4xx_json(rig: Rig, body: bytes, ctype: str, status: int) -> None:
    r = call(rig.app, "POST", "/api/v1/heartbeat", body=body, token="tok-1",
             headers={"Content-Type": ctype})  # fmt: skip
    assert r.status == status
    assert r.error_code


# -- operator reads ----------------------------------------------------------------------------


def test_operator_routes_need_the_operator_token(rig: Rig) -> None:
    for token in (None, "tok-1", "wrong"):
        r = call(rig.app, "GET", "/api/v1/fleet", token=token)
        assert (r.status, r.error_code) == (401, "unauthorized")
    assert call(rig.app, "GET", "/metrics").status == 401
    page = call(rig.app, "GET", "/")  # the dashboard: its login page, never a JSON 401
    assert page.status == 303 and page.headers["location"].endswith("/login")


def test_the_fleet_overview_counts_statuses_releases_and_failures(rig: Rig) -> None:
    failing = [{"name": "w", "state": "FATAL", "restarts": 5}, {"name": "ok", "state": "RUNNING"}]
    rig.hb("pi-01", "tok-1", workloads=failing)
    rig.hb("pi-02", "tok-2", release="r2")
    fleet = rig.get("/api/v1/fleet").json()
    assert fleet["by_status"] == {"online": 2, "stale": 0, "offline": 0, "never_seen": 1}
    assert fleet["releases"] == {"r1": 1, "r2": 1}
    assert fleet["daemon_versions"] == {"0.9": 2}
    assert fleet["failing_workloads"] == [
        {"client": "pi-01", "workload": "w", "state": "FATAL", "restarts": 5}
    ]
    rig.clock.now += 100
    rig.hb("pi-02", "tok-2")
    assert rig.get("/api/v1/fleet").json()["by_status"]["stale"] == 1
    rig.clock.now += 300
    assert rig.get("/api/v1/clients/pi-01").json()["status"] == "offline"


def test_clients_filter_and_page(rig: Rig) -> None:
    rig.hb("pi-01", "tok-1")
    rig.hb("pi-02", "tok-2", release="r2")

    def names(query: str) -> list[str]:
        return [c["name"] for c in rig.get(f"/api/v1/clients{query}").json()["clients"]]

    assert names("") == ["pi-01", "pi-02", "pi-03"]
    assert names("?status=never_seen") == ["pi-03"]
    assert names("?tag=prod") == ["pi-02"]
    assert names("?release=r2") == ["pi-02"]
    assert names("?q=PI-0&limit=1&offset=1") == ["pi-02"]
    assert rig.get("/api/v1/clients?limit=1").json()["total"] == 3
    assert rig.get("/api/v1/clients?status=bogus").status == 400
    assert rig.get("/api/v1/clients?limit=0").status == 400


def test_unknown_and_invalid_client_names(rig: Rig) -> None:
    assert rig.get("/api/v1/clients/nobody").error_code == "unknown_client"
    assert rig.get("/api/v1/clients/nobody/workloads").status == 404
    assert rig.get("/api/v1/clients/b%20d").status == 400


def test_workloads_history_and_events_of_a_client(rig: Rig) -> None:
    rig.hb("pi-01", "tok-1", workloads=[{"name": "w", "state": "FATAL"}])
    rig.clock.now += 300
    rig.hb("pi-01", "tok-1", workloads=[{"name": "w", "state": "RUNNING"}],
           system={"cpu_percent": 9.0})  # fmt: skip
    rig.central.coalescer.flush()
    w = rig.get("/api/v1/clients/pi-01/workloads").json()
    assert w["workloads"][0]["state"] == "RUNNING"
    points = rig.get(f"/api/v1/clients/pi-01/history?metric=cpu_percent&since={START}").json()
    assert [p["value"] for p in points["points"]] == [3.0, 9.0]
    assert rig.get("/api/v1/clients/pi-01/history?metric=rm%20-rf").status == 400
    assert rig.get("/api/v1/clients/pi-01/history?since=yesterday").status == 400
    kinds = [e["kind"] for e in rig.get("/api/v1/events?client=pi-01").json()["events"]]
    # newest first; past the grace, the flush also recorded never_seen -> online
    assert kinds == ["online", "fatal_left", "fatal_entered"]
    assert rig.get("/api/v1/events?kind=bogus").status == 400


# -- deployments -------------------------------------------------------------------------------


def test_deployments_are_written_and_read(rig: Rig) -> None:
    post = call(rig.app, "POST", "/api/v1/deployments", token=OPERATOR,
                json_body={"release": "r2", "actor": "fab", "status": "running"})  # fmt: skip
    assert post.status == 201
    dep_id = post.json()["id"]
    batches = [{"status": "succeeded", "clients": [{"name": "pi-01", "status": "ok"}]}]
    patch = call(rig.app, "PATCH", f"/api/v1/deployments/{dep_id}", token=OPERATOR,
                 json_body={"status": "succeeded", "batches": batches})  # fmt: skip
    assert patch.status == 200
    got = rig.get(f"/api/v1/deployments/{dep_id}").json()
    assert got["status"] == "succeeded" and got["batches"][0]["clients"][0]["status"] == "ok"
    assert [d["id"] for d in rig.get("/api/v1/deployments").json()["deployments"]] == [dep_id]
    assert rig.get("/api/v1/deployments/999").error_code == "unknown_deployment"
    bad_bodies: list[Any] = [
        {"bogus": 1},
        {"status": "Not A Word"},
        {"batches": [{"clients": [{}]}]},
        [],
    ]
    for bad in bad_bodies:
        r = call(rig.app, "POST", "/api/v1/deployments", token=OPERATOR, json_body=bad)
        assert r.status == 400, bad


# -- /metrics, openapi, routing ----------------------------------------------------------------


def test_metrics_expose_clients_heartbeats_flush_and_db(rig: Rig) -> None:
    rig.hb("pi-01", "tok-1")
    rig.hb("pi-01", "tok-9")
    rig.central.coalescer.flush()
    r = rig.get("/metrics")
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.body.decode()
    assert 'mastercontrol_central_clients{status="online"} 1' in text
    assert "mastercontrol_central_heartbeats_total 1" in text
    assert 'mastercontrol_central_heartbeats_rejected_total{reason="unauthorized"} 1' in text
    assert "mastercontrol_central_flush_seconds " in text
    assert "mastercontrol_central_db_bytes " in text


def test_the_openapi_document_is_served(rig: Rig) -> None:
    r = rig.get("/api/v1/openapi.yaml")
    assert r.status == 200 and b"openapi: 3" in r.body


def test_unknown_routes_and_methods_are_json(rig: Rig) -> None:
    assert rig.get("/api/v1/nothing").error_code == "not_found"
    r = call(rig.app, "DELETE", "/api/v1/fleet", token=OPERATOR)
    assert (r.status, r.error_code) == (405, "method_not_allowed")


# -- remote control through real HTTP ----------------------------------------------------------


class FakeClientAPI(http.server.BaseHTTPRequestHandler):
    """A stand-in for a client's API: answers by the path, records what it got."""

    seen: list[tuple[str, str, str | None, bytes]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        auth = self.headers.get("Authorization")
        FakeClientAPI.seen.append((self.command, self.path, auth, body))
        if "/slow/" in self.path:
            time.sleep(3)
        if "/redirect/" in self.path:
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/")
            self.end_headers()
            return
        status, reply = 200, {"name": "w", "pid": 7}
        if "/logs" in self.path:  # device text: the dashboard must escape it
            reply = {"name": "w", "lines": ["<b>device</b> line"]}
        if "/missing/" in self.path:
            status, reply = 404, {"error": {"code": "unknown_workload", "message": "no"}}
        if "/broken/" in self.path:
            status, reply = 500, {"error": {"code": "internal", "message": "oops"}}
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def client_api() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeClientAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeClientAPI.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def post(rig: Rig, path: str) -> Reply:
    return call(rig.app, "POST", path, token=OPERATOR)


def test_remote_restart_goes_to_the_heartbeat_url_with_the_clients_token(
    rig: Rig, client_api: str
) -> None:
    rig.hb("pi-01", "tok-1", api_url=client_api)
    r = post(rig, "/api/v1/clients/pi-01/workloads/w/restart")
    assert (r.status, r.json()) == (200, {"name": "w", "pid": 7})
    assert FakeClientAPI.seen == [("POST", "/api/v1/workloads/w/restart", "Bearer tok-1", b"")]
    event = rig.get("/api/v1/events?kind=action").json()["events"][0]
    assert (event["client"], event["workload"], event["action"], event["result"]) == (
        "pi-01", "w", "restart", "ok",
    )  # fmt: skip
    assert event["actor"].startswith("operator@")


def test_a_forged_x_forwarded_for_is_not_the_actor(rig: Rig, client_api: str) -> None:
    # The actor is the TCP peer (REMOTE_ADDR): any client can send X-Forwarded-For.
    rig.hb("pi-01", "tok-1", api_url=client_api)
    r = call(rig.app, "POST", "/api/v1/clients/pi-01/workloads/w/restart", token=OPERATOR,
             headers={"X-Forwarded-For": "203.0.113.9"},
             environ_extra={"REMOTE_ADDR": "192.0.2.7"})  # fmt: skip
    assert r.status == 200
    event = rig.get("/api/v1/events?kind=action").json()["events"][0]
    assert event["actor"] == "operator@192.0.2.7"


def test_the_clients_4xx_passes_through_and_its_5xx_is_502(rig: Rig, client_api: str) -> None:
    rig.hb("pi-01", "tok-1", api_url=client_api)
    r = post(rig, "/api/v1/clients/pi-01/workloads/missing/stop")
    assert (r.status, r.error_code) == (404, "unknown_workload")
    r = post(rig, "/api/v1/clients/pi-01/workloads/broken/start")
    assert (r.status, r.error_code) == (502, "client_error")
    assert r.json()["error"]["client_error"]["code"] == "internal"


def test_an_unreachable_or_slow_or_redirecting_client_is_502_or_504(
    rig: Rig, client_api: str, tmp_path: Path
) -> None:
    rig.hb("pi-01", "tok-1", api_url=client_api)
    assert post(rig, "/api/v1/clients/pi-01/workloads/slow/start").status == 504
    r = post(rig, "/api/v1/clients/pi-01/workloads/redirect/start")
    assert (r.status, r.error_code) == (502, "bad_client_reply")
    rig.hb("pi-01", "tok-1", api_url="http://127.0.0.1:9")  # discard port: refused
    r = post(rig, "/api/v1/clients/pi-01/workloads/w/start")
    assert (r.status, r.error_code) == (502, "client_unreachable")


def test_a_heartbeat_cannot_point_the_central_elsewhere(rig: Rig, client_api: str) -> None:
    # pi-03's inventory host is 10.9.9.9: a heartbeat naming 127.0.0.1 is not followed.
    rig.hb("pi-03", OPERATOR, api_url=client_api)
    r = post(rig, "/api/v1/clients/pi-03/reload")
    assert (r.status, r.error_code) == (502, "client_unreachable")
    assert FakeClientAPI.seen == []
    assert rig.get("/api/v1/events?kind=action").json()["events"][0]["result"] == "no_api_url"


def test_the_inventory_url_wins_and_config_and_logs_are_proxied(
    tmp_path: Path, client_api: str
) -> None:
    rig = build(tmp_path, entries(api_url=client_api))
    rig.hb("pi-01", "tok-1", api_url="http://127.0.0.1:9")
    files = {"files": {"a.yaml": "name: a\n"}, "replace": False}
    r = call(rig.app, "PUT", "/api/v1/clients/pi-01/config", token=OPERATOR, json_body=files)
    assert r.status == 200
    assert rig.get("/api/v1/clients/pi-01/workloads/w/logs?lines=5").status == 200
    assert post(rig, "/api/v1/clients/pi-01/reload?dry_run=1").status == 200
    assert [(m, p) for m, p, _, _ in FakeClientAPI.seen] == [
        ("PUT", "/api/v1/config"),
        ("GET", "/api/v1/workloads/w/logs?lines=5"),
        ("POST", "/api/v1/reload?dry_run=1"),
    ]
    assert json.loads(FakeClientAPI.seen[0][3]) == files
    assert rig.get("/api/v1/clients/pi-01/workloads/w/logs?lines=x").status == 400
    assert post(rig, "/api/v1/clients/pi-01/workloads/..%2F..%2Fetc/start").status in (400, 404)
    rig.central.store.close()
