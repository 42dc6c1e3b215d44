"""The client API over real HTTP: client_service.main under Waitress on 127.0.0.1, a real
daemon behind it. Every endpoint round-trips; every bad request gets its 4xx in JSON; the
service refuses what it must refuse and never shows the token."""

from __future__ import annotations

import json
import subprocess

import psutil
import pytest

from mastercontrol.api.body import MAX_BODY_BYTES
from mastercontrol.errors import EX_CONFIG
from tests.api.conftest import TOKEN
from tests.api.service import ApiService, free_port, write_daemon_yaml
from tests.integration.harness import Daemon, wait_for


def test_every_endpoint_round_trips(http: ApiService) -> None:
    assert http.request("GET", "/api/v1/health").json() == {"status": "ok"}
    status = http.request("GET", "/api/v1/status", token=TOKEN).json()
    assert status["daemon"]["pid"] == http.daemon.pid
    listing = http.request("GET", "/api/v1/workloads", token=TOKEN).json()
    assert [w["name"] for w in listing["workloads"]] == ["svc", "tick"]
    one = http.request("GET", "/api/v1/workloads/svc", token=TOKEN).json()
    assert one["state"] == "RUNNING"
    logs = http.request("GET", "/api/v1/workloads/svc/logs?lines=3", token=TOKEN).json()
    assert logs["name"] == "svc" and isinstance(logs["lines"], list)
    plan = http.request("POST", "/api/v1/reload?dry_run=1", token=TOKEN).json()
    assert plan["dry_run"] is True and plan["plan"]["unchanged"] == ["svc", "tick"]
    metrics = http.request("GET", "/metrics", token=TOKEN)
    assert metrics.status == 200 and b'mastercontrol_workload_state{name="svc"' in metrics.body
    spec = http.request("GET", "/api/v1/openapi.yaml", token=TOKEN)
    assert spec.status == 200 and spec.body.startswith(b"openapi: 3")


def test_a_restart_over_http_changes_the_real_pid(http: ApiService) -> None:
    old = http.daemon.status("svc")["pid"]
    assert psutil.pid_exists(old)
    reply = http.request("POST", "/api/v1/workloads/svc/restart", token=TOKEN)
    assert reply.status == 200
    new = wait_for(
        lambda: (st := http.daemon.status("svc"))["state"] == "RUNNING" and st["pid"] != old and st,
        what="svc to run again under a new pid",
    )
    assert psutil.Process(new["pid"]).is_running()
    stopped = http.request("POST", "/api/v1/workloads/svc/stop", token=TOKEN)
    assert stopped.status == 200
    http.daemon.wait_state("svc", "STOPPED")
    assert http.request("POST", "/api/v1/workloads/svc/start", token=TOKEN).status == 200
    http.daemon.wait_state("svc", "RUNNING")


def test_every_bad_request_gets_its_4xx_in_json(http: ApiService) -> None:
    def code_of(status: int, *args: object, **kwargs: object) -> str:
        reply = http.request(*args, **kwargs)  # type: ignore[arg-type]
        assert reply.status == status, (args, reply.status, reply.body[:200])
        assert reply.headers["content-type"].startswith("application/json"), reply.headers
        err = reply.json()["error"]
        assert isinstance(err["message"], str)
        assert "Traceback" not in reply.body.decode()
        code: str = err["code"]
        return code

    assert code_of(401, "GET", "/api/v1/workloads") == "unauthorized"
    assert code_of(401, "GET", "/metrics", token="wrong") == "unauthorized"
    assert code_of(404, "GET", "/api/v1/nope", token=TOKEN) == "not_found"
    assert code_of(404, "GET", "/api/v1/workloads/ghost", token=TOKEN) == "unknown_workload"
    assert code_of(405, "DELETE", "/api/v1/workloads/svc", token=TOKEN) == "method_not_allowed"
    assert code_of(400, "GET", "/api/v1/workloads/svc/logs?lines=x", token=TOKEN)
    put = {"method": "PUT", "path": "/api/v1/config", "token": TOKEN}
    ctype = {"Content-Type": "application/json"}
    assert code_of(400, **put, body=b"{oops", headers=ctype) == "bad_json"
    deep = b'{"files": ' + b"[" * 100 + b"]" * 100 + b"}"
    assert code_of(400, **put, body=deep, headers=ctype) == "bad_json"
    big = b'{"files": {"a.yaml": "' + b"x" * MAX_BODY_BYTES + b'"}}'
    assert code_of(413, **put, body=big, headers=ctype) == "too_large"  # JSON, not Waitress's
    assert code_of(415, **put, body=b"{}", headers={"Content-Type": "text/yaml"})
    # The daemon and its workload went on untouched.
    assert http.daemon.status("svc")["state"] == "RUNNING"


def test_the_token_never_shows_in_logs_responses_or_the_command_line(http: ApiService) -> None:
    for path in ("/api/v1/status", "/api/v1/workloads", "/metrics", "/api/v1/workloads/svc"):
        assert TOKEN.encode() not in http.request("GET", path, token=TOKEN).body
    http.request("GET", "/api/v1/workloads", token=TOKEN + "x")
    assert http.proc is not None
    proc = psutil.Process(http.proc.pid)
    assert TOKEN not in " ".join(proc.cmdline())
    assert TOKEN not in http.stderr()
    assert "listening on http://127.0.0.1:" in http.stderr()


def test_health_is_503_when_the_master_is_gone(http: ApiService) -> None:
    http.daemon.stop()
    reply = http.request("GET", "/api/v1/health")
    assert reply.status == 503 and reply.json()["error"]["code"] == "master_unreachable"
    assert http.request("GET", "/api/v1/workloads", token=TOKEN).status == 503


def run_service(daemon: Daemon) -> tuple[int, str]:
    service = ApiService(daemon)
    proc = service.spawn()
    try:
        code = proc.wait(30)
    except subprocess.TimeoutExpired:
        service.stop()
        raise
    return code, service.stderr()


@pytest.mark.parametrize("enabled", [False, True])
def test_a_non_loopback_address_without_a_token_is_refused(daemon: Daemon, enabled: bool) -> None:
    fleet: dict[str, object] = {"api_host": "0.0.0.0", "api_port": free_port()}
    if enabled:  # then the loader itself says so, with file and line
        fleet.update(enabled=True, central_api_url="http://127.0.0.1:1")
    write_daemon_yaml(daemon, fleet)
    code, err = run_service(daemon)
    assert code == EX_CONFIG
    if enabled:
        assert "daemon.yaml has 1 problem(s)" in err and "validate" in err
        validate = daemon.ctl("validate", check=False)
        assert validate.returncode != 0
        assert "daemon.yaml:3: fleet.api_token" in validate.stdout + validate.stderr
    else:
        assert "0.0.0.0" in err and "api_token" in err
    assert "Traceback" not in err


def test_problems_in_daemon_yaml_are_counted_not_quoted(daemon: Daemon) -> None:
    # A problem line may quote a value; with a bad token value that would print the secret.
    daemon.write("daemon.yaml", f"fleet:\n  api_token: {TOKEN}\n  api_port: nope\n")
    code, err = run_service(daemon)
    assert code == EX_CONFIG and "1 problem(s)" in err
    assert TOKEN not in err


def test_a_world_readable_token_file_is_refused(daemon: Daemon) -> None:
    token_file = daemon.root / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o644)
    write_daemon_yaml(daemon, {"api_port": free_port(), "api_token_file": str(token_file)})
    code, err = run_service(daemon)
    assert code == EX_CONFIG and "readable by every user" in err
    assert TOKEN not in err


def test_the_token_can_come_from_a_file(daemon: Daemon) -> None:
    token_file = daemon.root / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    port = free_port()
    write_daemon_yaml(daemon, {"api_port": port, "api_token_file": str(token_file)})
    daemon.start()
    service = ApiService(daemon)
    try:
        service.start(port)
        assert service.request("GET", "/api/v1/workloads", token=TOKEN).status == 200
        assert service.request("GET", "/api/v1/workloads").status == 401
    finally:
        service.stop()
    assert json.dumps(daemon.workloads()).find(TOKEN) == -1
