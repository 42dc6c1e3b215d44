"""The central's app under a real Waitress, built as the service builds it (`central_server`),
over real HTTP on 127.0.0.1: what Waitress itself does to proxy headers. In process (wsgiref)
the headers reach the app untouched; under Waitress they do not, so these are checked here."""

from __future__ import annotations

import http.client
import re
import threading
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest

from mastercontrol.api.central_service import central_server
from mastercontrol.config.model import CentralSettings
from tests.api.test_central_app import OPERATOR, FakeClientAPI, Rig, client_api, rig

__all__ = ["client_api", "rig"]  # the fixtures, imported to be used here


@pytest.fixture
def port(rig: Rig) -> Iterator[int]:
    server, _ = central_server(rig.central, CentralSettings(host="127.0.0.1", port=0))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield int(server.effective_port)
    finally:
        server.close()
        thread.join(timeout=10)


def send(
    port: int, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body or None, headers=headers)
    reply = conn.getresponse()
    reply.read()
    conn.close()
    return reply


def log_in(port: int, headers: dict[str, str]) -> http.client.HTTPResponse:
    form = send(port, "GET", "/login", headers)
    login_cookie = form.getheader("Set-Cookie", "").split(";")[0]
    csrf = login_cookie.split("=", 1)[1]
    body = urlencode({"csrf": csrf, "token": OPERATOR}).encode()
    return send(port, "POST", "/login", {**headers, "Cookie": login_cookie,
                "Content-Type": "application/x-www-form-urlencoded"}, body)  # fmt: skip


def test_behind_the_local_tls_proxy_the_session_cookie_is_secure(port: int) -> None:
    # docs/operations.md: nginx on the control host sends X-Forwarded-Proto: https.
    reply = log_in(port, {"X-Forwarded-Proto": "https"})
    assert reply.status == 303
    session = [c for c in reply.headers.get_all("Set-Cookie") or [] if c.startswith("mc_session")]
    assert session and re.search(r";\s*Secure", session[0], re.I), session
    assert "Max-Age=None" not in session[0]  # a session cookie: no Max-Age at all
    plain = log_in(port, {})
    cookies = [c for c in plain.headers.get_all("Set-Cookie") or [] if c.startswith("mc_session")]
    assert cookies and not re.search(r";\s*Secure", cookies[0], re.I), cookies


def test_a_forged_x_forwarded_for_is_not_the_actor_over_real_http(
    port: int, rig: Rig, client_api: str
) -> None:
    rig.hb("pi-01", "tok-1", api_url=client_api)
    headers = {"Authorization": f"Bearer {OPERATOR}", "X-Forwarded-For": "203.0.113.9"}
    reply = send(port, "POST", "/api/v1/clients/pi-01/workloads/w/restart", headers)
    assert reply.status == 200 and len(FakeClientAPI.seen) == 1
    (event,) = rig.central.store.events(kind="action")
    assert event["actor"] == "operator@127.0.0.1"
