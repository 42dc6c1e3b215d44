"""The client API in process (wsgiref.validate) over a real daemon's socket: every route, the
token check, and every error path answering JSON with a stable code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mastercontrol.api.body import MAX_BODY_BYTES, MAX_DEPTH
from mastercontrol.api.client_app import create_client_app
from mastercontrol.ipc.client import MasterClient
from tests.api.conftest import TOKEN, Live
from tests.api.wsgi import call
from tests.integration.harness import wait_for


def test_health_needs_no_token_and_shows_no_secrets(live: Live) -> None:
    reply = call(live.app, "GET", "/api/v1/health")
    assert reply.status == 200
    assert reply.json() == {"status": "ok"}
    assert TOKEN.encode() not in reply.body


def test_health_is_503_json_when_the_master_is_gone(tmp_path: Path) -> None:
    app = create_client_app(MasterClient(tmp_path / "no.sock"), TOKEN)
    reply = call(app, "GET", "/api/v1/health")
    assert reply.status == 503
    assert reply.error_code == "master_unreachable"
    reply = call(app, "GET", "/api/v1/workloads", token=TOKEN)
    assert (reply.status, reply.error_code) == (503, "master_unreachable")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN}x",
        "Bearer " + "a" * 100_000,  # absurdly long
        "Bearer caf\u00e9",  # not ASCII (latin-1 text, as WSGI hands it over)
        "Bearer \u00ff\u00fe",
    ],
)
def test_a_bad_or_missing_token_is_401_never_500(live: Live, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    for method, path in (("GET", "/api/v1/workloads"), ("GET", "/metrics"), ("GET", "/nope")):
        reply = call(live.app, method, path, headers=headers)
        assert reply.status == 401, (path, reply.body)
        assert reply.error_code == "unauthorized"
        assert reply.headers["www-authenticate"].startswith("Bearer")


def test_the_token_is_accepted_with_any_case_of_the_scheme(live: Live) -> None:
    reply = call(live.app, "GET", "/api/v1/workloads", headers={"Authorization": f"bearer {TOKEN}"})
    assert reply.status == 200


def test_no_token_configured_means_open_access(live: Live) -> None:
    app = create_client_app(live.master, None)
    assert call(app, "GET", "/api/v1/workloads").status == 200


def test_status_has_daemon_release_and_system(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCTL_RELEASE", "2026-12-01-abc")
    data = call(live.app, "GET", "/api/v1/status", token=TOKEN).json()
    assert data["daemon"]["pid"] == live.daemon.pid
    assert data["daemon"]["version"]
    assert data["daemon"]["uptime_seconds"] >= 0
    assert data["release"] == "2026-12-01-abc"
    system = data["system"]
    assert len(system["load"]) == 3
    assert system["memory"]["total_bytes"] > 0
    assert set(system["disk"]) == {"state", "log"}
    assert TOKEN not in json.dumps(data)


def test_workloads_are_the_list_json_objects(live: Live) -> None:
    data = call(live.app, "GET", "/api/v1/workloads", token=TOKEN).json()
    names = [w["name"] for w in data["workloads"]]
    assert names == ["svc", "tick"]
    assert data["workloads"][0]["state"] == "RUNNING"
    assert "daemon" in data
    tagged = call(live.app, "GET", "/api/v1/workloads?tag=web", token=TOKEN).json()
    assert [w["name"] for w in tagged["workloads"]] == ["svc"]


def test_one_workload_is_the_status_json_object(live: Live) -> None:
    data = call(live.app, "GET", "/api/v1/workloads/svc", token=TOKEN).json()
    assert data["name"] == "svc" and data["version"] == "1.2.0"
    assert "recent_runs" in data and "log_path" in data


def test_stop_start_restart_round_trip(live: Live) -> None:
    pid = live.daemon.status("svc")["pid"]
    reply = call(live.app, "POST", "/api/v1/workloads/svc/restart", token=TOKEN)
    assert reply.status == 200 and reply.json()["name"] == "svc"
    new = live.daemon.wait_state("svc", "RUNNING")
    assert new["pid"] != pid
    assert call(live.app, "POST", "/api/v1/workloads/svc/stop", token=TOKEN).status == 200
    live.daemon.wait_state("svc", "STOPPED")
    assert call(live.app, "POST", "/api/v1/workloads/svc/start", token=TOKEN).status == 200
    live.daemon.wait_state("svc", "RUNNING")


def test_logs_returns_the_last_lines(live: Live) -> None:
    live.daemon.workload("talk", "chatter", type="script", max_runs=1, params={"lines": 20})
    live.daemon.ctl("reload")
    wait_for(lambda: len(live.master.logs("talk", 5)["lines"]) == 5, what="chatter's output")
    data = call(live.app, "GET", "/api/v1/workloads/talk/logs?lines=5", token=TOKEN).json()
    assert data["name"] == "talk" and len(data["lines"]) == 5
    default = call(live.app, "GET", "/api/v1/workloads/talk/logs", token=TOKEN).json()
    assert len(default["lines"]) >= 20


@pytest.mark.parametrize("lines", ["-1", "abc", "10001", "1.5", "\u0661"])
def test_bad_lines_is_400(live: Live, lines: str) -> None:
    reply = call(live.app, "GET", f"/api/v1/workloads/svc/logs?lines={lines}", token=TOKEN)
    assert (reply.status, reply.error_code) == (400, "bad_request")


def test_reload_and_its_dry_run(live: Live) -> None:
    live.daemon.workload("extra", "sleep_forever")
    dry = call(live.app, "POST", "/api/v1/reload?dry_run=1", token=TOKEN).json()
    assert dry["dry_run"] is True and "extra" in dry["plan"]["add"]
    assert "extra" not in live.daemon.workloads()
    done = call(live.app, "POST", "/api/v1/reload", token=TOKEN).json()
    assert done["dry_run"] is False
    live.daemon.wait_state("extra", "RUNNING")
    for value in ("maybe", ""):  # `?dry_run=` is no answer: refused, not taken as false
        bad = call(live.app, "POST", f"/api/v1/reload?dry_run={value}", token=TOKEN)
        assert (bad.status, bad.error_code) == (400, "bad_request")


def test_an_unknown_query_parameter_is_400_and_does_nothing(live: Live) -> None:
    live.daemon.workload("extra", "sleep_forever")
    reply = call(live.app, "POST", "/api/v1/reload?dryrun=1", token=TOKEN)  # typo of dry_run
    assert (reply.status, reply.error_code) == (400, "bad_request")
    assert "dryrun" in reply.json()["error"]["message"]
    assert "extra" not in live.daemon.workloads()


def test_an_invalid_config_on_reload_is_422_with_file_and_line(live: Live) -> None:
    live.daemon.write("broken.yaml", "name: broken\ntype: service\nmodule: x\nbogus: 1\n")
    reply = call(live.app, "POST", "/api/v1/reload", token=TOKEN)
    assert reply.status == 422
    err = reply.json()["error"]
    assert err["code"] == "invalid_config"
    problem = next(p for p in err["problems"] if p["file"].endswith("broken.yaml"))
    assert problem["line"] == 4 and "bogus" in (problem["field"] or problem["message"])


def test_unknown_workload_is_404(live: Live) -> None:
    for method, path in (
        ("GET", "/api/v1/workloads/ghost"),
        ("POST", "/api/v1/workloads/ghost/start"),
        ("GET", "/api/v1/workloads/ghost/logs"),
    ):
        reply = call(live.app, method, path, token=TOKEN)
        assert (reply.status, reply.error_code) == (404, "unknown_workload"), path


@pytest.mark.parametrize("name", ["..", ".", "a b", "x" * 129, "caf\u00e9", "a;b", "@@x"])
def test_a_name_that_cannot_be_a_workload_is_400_before_the_master_sees_it(
    live: Live, name: str
) -> None:
    reply = call(live.app, "GET", f"/api/v1/workloads/{name}/logs", token=TOKEN)
    assert (reply.status, reply.error_code) == (400, "bad_request")


def test_unknown_route_is_404_and_wrong_method_405_in_json(live: Live) -> None:
    reply = call(live.app, "GET", "/api/v1/nothing-here", token=TOKEN)
    assert (reply.status, reply.error_code) == (404, "not_found")
    assert reply.headers["content-type"].startswith("application/json")
    reply = call(live.app, "DELETE", "/api/v1/workloads", token=TOKEN)
    assert (reply.status, reply.error_code) == (405, "method_not_allowed")
    reply = call(live.app, "GET", "/api/v1/workloads/svc/restart", token=TOKEN)
    assert reply.status == 405
    reply = call(live.app, "POST", "/api/v1/workloads/svc/explode", token=TOKEN)
    assert reply.status in (404, 405) and reply.json()["error"]["code"]


def put(live: Live, body: bytes, ctype: str = "application/json") -> tuple[int, str]:
    reply = call(
        live.app, "PUT", "/api/v1/config", body=body, headers={"Content-Type": ctype}, token=TOKEN
    )
    return reply.status, reply.error_code


def test_config_push_bad_bodies_get_their_4xx(live: Live) -> None:
    assert put(live, b'{"files": {}}', "text/plain") == (415, "unsupported_media_type")
    assert put(live, b"", "application/json") == (400, "bad_json")
    assert put(live, b"{not json", "application/json") == (400, "bad_json")
    assert put(live, b"\xff\xfe", "application/json") == (400, "bad_json")
    assert put(live, b'{"files": NaN}', "application/json") == (400, "bad_json")
    deep = b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)
    assert put(live, deep) == (400, "bad_json")
    very_deep = b"[" * 200_000 + b"]" * 200_000  # past the C parser's recursion limit
    assert put(live, very_deep[: MAX_BODY_BYTES - 1]) == (400, "bad_json")
    assert put(live, b" " * (MAX_BODY_BYTES + 1)) == (413, "too_large")
    assert put(live, b"[]") == (400, "bad_request")
    assert put(live, b'{"files": {"a.yaml": "x"}, "extra": 1}') == (400, "bad_request")
    assert put(live, b'{"files": {"a.yaml": 1}}') == (400, "bad_request")
    assert put(live, b'{"files": {"a.yaml": "x"}, "replace": "yes"}') == (400, "bad_request")
    assert put(live, b'{"files": {}}') == (400, "bad_request")


@pytest.mark.parametrize(
    "fname", ["../evil.yaml", "sub/x.yaml", ".hidden.yaml", "x.txt", "daemon.yaml", "x" * 200]
)
def test_config_push_file_names_are_checked(live: Live, fname: str) -> None:
    body = json.dumps({"files": {fname: "name: x\n"}}).encode()
    assert put(live, body) == (400, "bad_request")


def test_a_garbled_content_length_is_400(live: Live) -> None:
    reply = call(
        live.app,
        "PUT",
        "/api/v1/config",
        body=b"{}",
        headers={"Content-Type": "application/json"},
        token=TOKEN,
        environ_extra={"CONTENT_LENGTH": "12abc"},
        validate=False,  # wsgiref.validate itself chokes on it; a sloppy server might not
    )
    assert (reply.status, reply.error_code) == (400, "bad_request")


def test_metrics_is_prometheus_text(live: Live) -> None:
    live.daemon.wait_state("svc", "RUNNING")
    reply = call(live.app, "GET", "/metrics", token=TOKEN)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = reply.body.decode()
    assert 'mastercontrol_workload_state{name="svc",state="RUNNING"} 1' in text
    assert 'mastercontrol_workload_state{name="svc",state="STOPPED"} 0' in text
    assert 'mastercontrol_workload_restarts_total{name="svc"}' in text
    assert 'mastercontrol_workload_runs_total{name="tick"} 0' in text
    assert "# TYPE node_load1 gauge" in text
    assert "node_memory_MemAvailable_bytes " in text
    assert 'node_filesystem_avail_bytes{label="state"' in text
    assert "last_run_duration_seconds{" not in text  # no run has ended yet
    for line in text.splitlines():  # every sample line is NAME{labels} VALUE
        if line and not line.startswith("#"):
            name_part, _, value = line.rpartition(" ")
            float(value)
            assert name_part


def test_metrics_show_the_last_run_duration_from_one_listing(live: Live) -> None:
    first = live.daemon.status("svc")["pid"]
    assert live.daemon.ctl("restart", "svc").returncode == 0
    wait_for(lambda: (st := live.daemon.status("svc"))["state"] == "RUNNING" and st["pid"] != first)
    text = call(live.app, "GET", "/metrics", token=TOKEN).body.decode()
    line = next(ln for ln in text.splitlines() if ln.startswith("mastercontrol_workload_last_run"))
    assert line.startswith('mastercontrol_workload_last_run_duration_seconds{name="svc"} ')
    assert float(line.rsplit(" ", 1)[1]) > 0
    assert 'last_run_duration_seconds{name="tick"}' not in text  # it never ran


def test_openapi_document_is_served(live: Live) -> None:
    reply = call(live.app, "GET", "/api/v1/openapi.yaml", token=TOKEN)
    assert reply.status == 200
    assert reply.body.startswith(b"openapi: 3")
