"""The heartbeat fast path (api/central_heartbeat.py) in process: an accepted heartbeat is
answered without Bottle and exactly as the route answers it; every other request reaches the
Bottle app with its body intact, so refusals keep their one implementation."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mastercontrol.api.central_app import create_central_app
from mastercontrol.api.central_heartbeat import with_heartbeat_fast_path
from tests.api.test_central_app import START, Rig, build, entries
from tests.api.wsgi import call


class Counting:
    """The Bottle app, counting the requests that reach it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.paths: list[str] = []

    def __call__(self, environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        self.paths.append(environ["PATH_INFO"])
        return self.app(environ, start)  # type: ignore[no-any-return]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Rig, Counting, Any]]:
    r = build(tmp_path, entries())
    bottle_app = Counting(create_central_app(r.central))
    yield r, bottle_app, with_heartbeat_fast_path(bottle_app, r.central)
    r.central.store.close()


def beat(name: str = "pi-01", **over: Any) -> dict[str, Any]:
    return {"client_name": name, "sent_at": START, "release": "r1", **over}


def test_an_accepted_heartbeat_is_answered_without_bottle_as_the_route_answers(
    rig: tuple[Rig, Counting, Any],
) -> None:
    r, bottle_app, fast = rig
    got = call(fast, "POST", "/api/v1/heartbeat", json_body=beat(), token="tok-1")
    assert bottle_app.paths == []
    plain = call(bottle_app, "POST", "/api/v1/heartbeat", json_body=beat(), token="tok-1")
    assert (got.status, got.json()) == (plain.status, plain.json()) == (
        200, {"accepted": True, "client": "pi-01", "received_at": START},
    )  # fmt: skip
    assert got.headers["content-type"] == plain.headers["content-type"]
    assert r.central.coalescer.get("pi-01") is not None and r.central.coalescer.heartbeats == 2


@pytest.mark.parametrize(
    ("token", "body", "ctype", "status", "code"),
    [
        (None, json.dumps(beat()).encode(), "application/json", 401, "unauthorized"),
        ("tok-2", json.dumps(beat()).encode(), "application/json", 403, "forbidden"),
        ("tok-1", json.dumps(beat("pi-99")).encode(), "application/json", 403, "unlisted_client"),
        ("tok-1", b"{not json", "application/json", 400, "bad_json"),
        ("tok-1", b"", "application/json", 400, "bad_json"),
        ("tok-1", json.dumps(beat()).encode(), "text/plain", 415, "unsupported_media_type"),
        (
            "tok-1",
            json.dumps(beat(sent_at="x")).encode(),
            "application/json",
            422,
            "invalid_heartbeat",
        ),
        (
            "tok-1",
            json.dumps(beat(pad="x" * 300_000)).encode(),
            "application/json",
            413,
            "too_large",
        ),
    ],
)
def test_every_refusal_goes_to_the_bottle_route_with_its_body(
    rig: tuple[Rig, Counting, Any], token: str | None, body: bytes, ctype: str, status: int,
    code: str,
) -> None:  # fmt: skip
    r, bottle_app, fast = rig
    got = call(fast, "POST", "/api/v1/heartbeat", body=body, token=token,
               headers={"Content-Type": ctype})  # fmt: skip
    assert (got.status, got.error_code) == (status, code)
    assert bottle_app.paths == ["/api/v1/heartbeat"]
    assert r.central.coalescer.heartbeats == 0


def test_other_routes_and_methods_pass_through(rig: tuple[Rig, Counting, Any]) -> None:
    _, bottle_app, fast = rig
    assert call(fast, "GET", "/api/v1/heartbeat").status == 405
    assert call(fast, "GET", "/api/v1/fleet", token="operator-token").status == 200
    assert bottle_app.paths == ["/api/v1/heartbeat", "/api/v1/fleet"]
