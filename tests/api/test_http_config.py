"""PUT /api/v1/config and POST /api/v1/config/rollback over real HTTP, through the real
daemon: a valid push starts the new workload, an invalid one is a 422 with file and line and
leaves the config dir byte-identical, rollback restores the previous set."""

from __future__ import annotations

import json
from pathlib import Path

from tests.api.conftest import TOKEN
from tests.api.service import ApiService
from tests.integration.harness import wait_for


def yaml_of(name: str, func: str = "sleep_forever", **fields: object) -> str:
    body: dict[str, object] = {"name": name, "type": "service"}
    body.update(module="tests.integration.workloads", entry_point=func, **fields)
    return json.dumps(body, indent=2) + "\n"  # JSON is valid YAML


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def push(http: ApiService, files: dict[str, str], replace: bool = False) -> tuple[int, object]:
    reply = http.request(
        "PUT", "/api/v1/config", token=TOKEN, json_body={"files": files, "replace": replace}
    )
    return reply.status, reply.json()


def test_a_valid_push_starts_the_new_workload_and_rollback_restores(http: ApiService) -> None:
    conf = http.daemon.config_dir
    before = snapshot(conf)
    svc_pid = http.daemon.status("svc")["pid"]

    status, body = push(http, {"web.yaml": yaml_of("web")})
    assert status == 200, body
    assert isinstance(body, dict) and body["plan"]["add"] == ["web"]
    assert body["written"] == ["web.yaml"]
    http.daemon.wait_state("web", "RUNNING")
    assert http.daemon.status("svc")["pid"] == svc_pid  # unchanged: untouched

    reply = http.request("POST", "/api/v1/config/rollback", token=TOKEN)
    assert reply.status == 200, reply.body
    assert reply.json()["plan"]["remove"] == ["web"]
    wait_for(lambda: "web" not in http.daemon.workloads(), what="web to be removed")
    assert snapshot(conf) == before


def test_an_invalid_push_is_422_with_file_and_line_and_changes_nothing(http: ApiService) -> None:
    conf = http.daemon.config_dir
    before = snapshot(conf)
    bad = yaml_of("web").replace('"type": "service"', '"type": "service",\n  "bogus": 1')
    status, body = push(http, {"web.yaml": bad, "ok.yaml": yaml_of("ok")}, replace=True)
    assert status == 422, body
    assert isinstance(body, dict)
    err = body["error"]
    assert err["code"] == "invalid_config"
    problem = next(p for p in err["problems"] if p["file"].endswith("web.yaml"))
    assert problem["line"] == 4 and "bogus" in f"{problem['field']} {problem['message']}"
    assert snapshot(conf) == before  # byte-identical, nothing removed by replace either
    assert "ok" not in http.daemon.workloads()
    assert http.daemon.status("svc")["state"] == "RUNNING"


def test_rollback_with_nothing_pushed_is_a_409(http: ApiService) -> None:
    reply = http.request("POST", "/api/v1/config/rollback", token=TOKEN)
    assert reply.status == 409
    assert reply.json()["error"]["code"] == "no_previous_config"
