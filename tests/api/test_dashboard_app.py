"""The dashboard in process (wsgiref.validate) over a real sqlite fleet DB and a fake clock:
login and sessions, CSRF, the pages and their escaping, the security headers, and the buttons
proxied to a real HTTP stand-in for a client's API on 127.0.0.1."""

from __future__ import annotations

import re
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml

from mastercontrol.api.dashboard_auth import LoginThrottle, Sessions
from mastercontrol.fleet.roster import RosterEntry
from tests.api.test_central_app import OPERATOR, FakeClientAPI, Rig, build, client_api, entries
from tests.api.wsgi import Reply, call

__all__ = ["client_api"]  # the fixture, imported to be used here


class Browser:
    """Cookies kept between calls, as a browser would (path-scoped, deleted when expired)."""

    def __init__(self, rig: Rig, https: bool = False, addr: str = "127.0.0.1") -> None:
        self.rig = rig
        self.cookies: dict[str, str] = {}
        self.https = https
        self.addr = addr  # the peer's address (REMOTE_ADDR)
        self.headers: dict[str, str] = {}  # sent with every request

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> Reply:
        headers = dict(self.headers)
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if self.https:
            headers["X-Forwarded-Proto"] = "https"
        body = None
        if form is not None:
            body = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        r = call(self.rig.app, method, path, body=body, headers=headers,
                 environ_extra={"REMOTE_ADDR": self.addr})  # fmt: skip
        for name, value in r.header_list:
            if name.lower() == "set-cookie":
                morsel = next(iter(SimpleCookie(value).values()))
                if morsel["max-age"] == "-1" or morsel.value == "" or "1970" in morsel["expires"]:
                    self.cookies.pop(morsel.key, None)
                else:
                    self.cookies[morsel.key] = morsel.value
        return r

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, form: dict[str, str]) -> Reply:
        return self.request("POST", path, form)

    def csrf(self, path: str = "/") -> str:
        found = re.search(rb'name="csrf" value="([^"]+)"', self.get(path).body)
        assert found, "no CSRF field on the page"
        return found.group(1).decode()

    def login(self, token: str = OPERATOR) -> Reply:
        return self.post("/login", {"csrf": self.csrf("/login"), "token": token})


def set_cookies(r: Reply) -> list[str]:
    return [v for k, v in r.header_list if k.lower() == "set-cookie"]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = build(tmp_path, entries())
    yield r
    r.central.store.close()


@pytest.fixture
def browser(rig: Rig) -> Browser:
    b = Browser(rig)
    assert b.login().status == 303
    return b


# -- login, sessions, CSRF ---------------------------------------------------------------------


def test_without_a_session_every_page_goes_to_the_login_page_never_a_json_401(rig: Rig) -> None:
    for path in ("/", "/clients/pi-01", "/deployments", "/deployments/1", "/events"):
        r = call(rig.app, "GET", path)
        assert r.status == 303 and r.headers["location"].endswith("/login"), path
    page = call(rig.app, "GET", "/login")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert b'name="token"' in page.body and b'type="password"' in page.body


def test_login_with_the_operator_token_sets_an_httponly_strict_session_cookie(rig: Rig) -> None:
    b = Browser(rig)
    r = b.login()
    assert r.status == 303 and r.headers["location"].endswith("/")
    (session,) = [c for c in set_cookies(r) if c.startswith("mc_session=")]
    attrs = {a.strip().lower() for a in session.split(";")}
    assert {"httponly", "samesite=strict", "path=/"} <= attrs
    assert "secure" not in attrs  # plain http on loopback: a Secure cookie would be dropped
    assert b.get("/").status == 200
    behind_tls = Browser(rig, https=True)
    (session,) = [c for c in set_cookies(behind_tls.login()) if c.startswith("mc_session=")]
    assert "secure" in {a.strip().lower() for a in session.split(";")}


def test_a_wrong_token_is_refused_and_makes_no_session(rig: Rig) -> None:
    for token in ("wrong", "tok-1", "", "caf\u00e9", "x" * 5000):
        b = Browser(rig)
        r = b.login(token)
        assert r.status == 401 and b"not the operator" in r.body, token
        assert "mc_session" not in b.cookies
        assert b.get("/").status == 303


def test_failed_logins_are_limited_per_address_and_overall_then_forgiven(rig: Rig) -> None:
    clock = [0.0]
    rig.central.login_throttle = LoginThrottle(per_address=3, overall=5, window=60,
                                               clock=lambda: clock[0])  # fmt: skip
    guesser = Browser(rig, addr="192.0.2.7")
    for _ in range(3):
        assert guesser.login("guess").status == 401
    r = guesser.login(OPERATOR)  # even the right token waits: the address is guessing
    assert r.status == 429 and b"Too many failed logins" in r.body
    assert r.headers["retry-after"] == "60"
    assert "mc_session" not in guesser.cookies
    # A spoofed X-Forwarded-For is not another address: a real login (cookie, CSRF field)
    # from the guessing peer still waits.
    guesser.headers["X-Forwarded-For"] = "198.51.100.1"
    assert guesser.login(OPERATOR).status == 429
    del guesser.headers["X-Forwarded-For"]
    # Other addresses: two more failures reach the overall limit of 5...
    for addr in ("192.0.2.8", "192.0.2.9"):
        assert Browser(rig, addr=addr).login("guess").status == 401
    assert Browser(rig, addr="192.0.2.8").login(OPERATOR).status == 429
    # ...but an address with no failure still gets its try, so the operator gets in.
    assert Browser(rig, addr="203.0.113.5").login(OPERATOR).status == 303
    clock[0] = 30
    assert guesser.login(OPERATOR).status == 429
    assert guesser.login(OPERATOR).headers["retry-after"] == "30"
    clock[0] = 60.5  # the window has passed: never locked out for good
    assert guesser.login(OPERATOR).status == 303


def test_a_post_without_its_csrf_token_is_403_and_does_nothing(
    rig: Rig, browser: Browser, client_api: str
) -> None:
    rig.hb("pi-01", "tok-1", api_url=client_api, workloads=[{"name": "w", "state": "RUNNING"}])
    for form in ({}, {"csrf": "forged"}, {"csrf": ""}):
        r = browser.post("/clients/pi-01/workloads/w/restart", form)
        assert r.status == 403 and b"CSRF" in r.body, form
        r = browser.post("/logout", form)
        assert r.status == 403
    assert FakeClientAPI.seen == []
    assert rig.central.store.events(kind="action") == []
    # The login form has its own token (no session yet): without it, 403 too.
    r = Browser(rig).post("/login", {"token": OPERATOR})
    assert r.status == 403
    assert browser.get("/").status == 200  # still logged in


def test_a_session_expires_and_logging_out_ends_it(rig: Rig, browser: Browser) -> None:
    r = browser.post("/logout", {"csrf": browser.csrf()})
    assert r.status == 303 and r.headers["location"].endswith("/login")
    assert browser.get("/").status == 303
    clock = [0.0]
    sessions = Sessions(idle=10, max_age=100, limit=2, clock=lambda: clock[0])
    s = sessions.login()
    clock[0] = 9
    assert sessions.get(s.sid) is s  # use slides the idle deadline...
    clock[0] = 18
    assert sessions.get(s.sid) is s
    clock[0] = 28.5
    assert sessions.get(s.sid) is None  # ...but not forever
    a, b, c = sessions.login(), sessions.login(), sessions.login()
    assert sessions.get(a.sid) is None and len(sessions) == 2  # the oldest goes first
    for odd in (None, "", "x" * 1000, "caf\u00e9", b.sid + "x"):
        assert sessions.get(odd) is None
    assert c.csrf_ok(c.csrf) and not c.csrf_ok(None) and not c.csrf_ok(c.csrf[:-1])


def test_a_logged_in_dashboard_may_call_the_json_api_with_its_cookie(
    rig: Rig, browser: Browser, client_api: str
) -> None:
    rig.hb("pi-01", "tok-1", api_url=client_api, workloads=[{"name": "w", "state": "RUNNING"}])
    r = browser.get("/api/v1/fleet")
    assert r.status == 200 and r.json()["by_status"]["online"] == 1
    assert browser.get("/api/v1/clients/pi-01").json()["name"] == "pi-01"
    assert browser.get("/metrics").status == 200
    # An unsafe method needs the session's CSRF token in a header, not only the cookie.
    restart = "/api/v1/clients/pi-01/workloads/w/restart"
    assert browser.post(restart, {}).status == 401
    cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    for bad in ("", "forged", browser.csrf() + "x"):
        r = call(rig.app, "POST", restart, headers={"Cookie": cookie, "X-CSRF-Token": bad})
        assert (r.status, r.error_code) == (401, "unauthorized"), bad
    assert FakeClientAPI.seen == []
    r = call(rig.app, "POST", restart, headers={"Cookie": cookie, "X-CSRF-Token": browser.csrf()})
    assert r.status == 200 and len(FakeClientAPI.seen) == 1
    # The page carries the token for scripts; without a session the cookie opens nothing.
    assert f'name="csrf-token" content="{browser.csrf()}"'.encode() in browser.get("/").body
    browser.post("/logout", {"csrf": browser.csrf()})
    assert browser.get("/api/v1/fleet").status == 401
    r = call(rig.app, "GET", "/api/v1/fleet", headers={"Cookie": "mc_session=forged"})
    assert r.status == 401


SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi" / "central.yaml"
CONCRETE = {"{name}": "pi-01", "{workload}": "w", "{action}": "restart", "{id}": "1"}


def test_the_openapi_document_declares_the_session_as_the_api_honours_it(
    rig: Rig, browser: Browser, client_api: str
) -> None:
    """Every operation's declared security, tried: a GET opens with the cookie alone, any other
    method (the heartbeat aside: a client's token only) with the cookie and X-CSRF-Token."""
    spec = yaml.safe_load(SPEC.read_text())
    schemes = spec["components"]["securitySchemes"]
    assert (schemes["session"]["in"], schemes["session"]["name"]) == ("cookie", "mc_session")
    assert (schemes["csrf"]["in"], schemes["csrf"]["name"]) == ("header", "X-CSRF-Token")
    rig.hb("pi-01", "tok-1", api_url=client_api, workloads=[{"name": "w", "state": "RUNNING"}])
    rig.central.store.create_deployment({"release": "r1"}, rig.clock.now)
    cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    csrf = browser.csrf()
    seen = 0
    for template, item in spec["paths"].items():
        path = template
        for key, value in CONCRETE.items():
            path = path.replace(key, value)
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue  # the path item's parameters and description
            ways = {frozenset(alt) for alt in op.get("security", spec["security"])}
            body: dict[str, Any] | None = (
                {"files": {}} if method == "put" else {} if method != "get" else None
            )
            cookie_only = call(rig.app, method.upper(), path, json_body=body,
                               headers={"Cookie": cookie}, validate=False)  # fmt: skip
            with_csrf = call(rig.app, method.upper(), path, json_body=body,
                             headers={"Cookie": cookie, "X-CSRF-Token": csrf},
                             validate=False)  # fmt: skip
            if op["operationId"] == "heartbeat":
                assert ways == {frozenset({"bearer"})}
                assert cookie_only.status == with_csrf.status == 401
            elif method == "get":
                assert ways == {frozenset({"bearer"}), frozenset({"session"})}, template
                assert cookie_only.status == 200, (template, cookie_only.body[:200])
            else:
                assert ways == {frozenset({"bearer"}), frozenset({"session", "csrf"})}, template
                assert cookie_only.status == 401, template
                assert with_csrf.status != 401, (template, with_csrf.body[:200])
            seen += 1
    assert seen == 17


# -- headers and escaping ----------------------------------------------------------------------


def test_every_dashboard_response_carries_the_security_headers(rig: Rig, browser: Browser) -> None:
    rig.hb("pi-01", "tok-1")
    rig.central.store.create_deployment({"status": "done"}, rig.clock.now)
    for path in ("/", "/clients/pi-01", "/deployments", "/deployments/1", "/events",
                 "/clients/nobody", "/login"):  # fmt: skip
        r = browser.get(path) if path != "/login" else call(rig.app, "GET", path)
        h = r.headers
        csp = h["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert "unsafe-inline" not in csp
        assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
        assert h["cache-control"] == "no-store", path
        assert b"<script>" not in r.body  # no inline script anywhere
        if path != "/login":
            assert b'<script src="/static/dashboard.js"' in r.body
    assert browser.get("/clients/nobody").status == 404
    assert browser.get("/deployments/99").status == 404
    css = browser.get("/static/dashboard.css")
    assert css.status == 200 and css.headers["content-type"].startswith("text/css")
    assert browser.get("/static/../central_app.py").status == 404


def test_device_provided_text_is_escaped_everywhere(
    rig: Rig, browser: Browser, client_api: str
) -> None:
    evil = "<script>alert(1)</script>"
    rig.hb("pi-01", "tok-1", release=evil, daemon_version=evil, api_url=client_api,
           workloads=[{"name": "w", "state": evil, "last_exit": {"reason": evil}}],
           system={"cpu_percent": 1.0})  # fmt: skip
    rig.central.store.create_deployment(
        {"status": "failed", "release": evil, "message": evil,
         "batches": [{"index": 0, "status": "failed",
                      "clients": [{"name": evil, "status": "failed", "message": evil}]}]},
        rig.clock.now,
    )  # fmt: skip
    for path in ("/", "/clients/pi-01", "/deployments", "/deployments/1", "/events"):
        body = browser.get(path).body
        assert evil.encode() not in body, path
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in browser.get("/clients/pi-01").body


# -- the overview ------------------------------------------------------------------------------


def names_on(r: Reply) -> list[str]:
    return re.findall(r'<tr data-client="([^"]+)"', r.body.decode())


def test_the_overview_has_a_row_per_client_with_status_metrics_and_workloads(
    rig: Rig, browser: Browser
) -> None:
    system = {
        "cpu_percent": 12.5, "memory": {"used_percent": 40.0}, "temperature_c": 61.0,
        "disk": {"/": {"used_percent": 70.0}}, "throttling": {"under_voltage": True},
    }  # fmt: skip
    wl = [{"name": "a", "state": "RUNNING"}, {"name": "b", "state": "FATAL"}]
    rig.hb("pi-01", "tok-1", system=system, workloads=wl)
    rig.clock.now += 100  # pi-01 turns stale (stale_after 90)
    rig.hb("pi-02", "tok-2")
    page = browser.get("/")
    html = page.body.decode()
    assert names_on(page) == ["pi-01", "pi-02", "pi-03"]
    row = html[html.index('data-client="pi-01"') :].split("</tr>")[0]
    for text in (
        "stale",
        "12%",
        "40%",
        "70%",
        "61°C",
        "throttled",
        "1 ok",
        "1 failed",
        "1 min ago",
    ):
        assert text in row, text
    assert "never seen" in html.split('data-client="pi-03"')[1].split("</tr>")[0]


def test_the_overview_and_the_api_count_failed_workloads_by_one_rule(
    rig: Rig, browser: Browser
) -> None:
    # A crash-looping internal service is a failure on both (it was hidden from the dashboard).
    wl = [
        {"name": "a", "state": "RUNNING"},
        {"name": "b", "state": "FATAL"},
        {"name": "@client-api", "state": "BACKOFF", "internal": True},
        {"name": "@heartbeat", "state": "RUNNING", "internal": True},
    ]
    rig.hb("pi-01", "tok-1", workloads=wl)
    api = rig.get("/api/v1/clients/pi-01").json()
    assert (api["workloads_total"], api["workloads_failed"]) == (4, 2)
    failing = rig.get("/api/v1/fleet").json()["failing_workloads"]
    assert sorted(f["workload"] for f in failing) == ["@client-api", "b"]
    html = browser.get("/").body.decode()
    row = html[html.index('data-client="pi-01"') :].split("</tr>")[0]
    assert "2 ok" in row and "2 failed" in row


def test_the_overview_filters_sorts_searches_and_pages_on_the_server(
    rig: Rig, browser: Browser
) -> None:
    rig.hb("pi-01", "tok-1", system={"cpu_percent": 50.0})
    rig.hb("pi-02", "tok-2", system={"cpu_percent": 90.0})
    assert names_on(browser.get("/?status=online")) == ["pi-01", "pi-02"]
    assert names_on(browser.get("/?status=never_seen")) == ["pi-03"]
    assert names_on(browser.get("/?tag=prod")) == ["pi-02"]
    assert names_on(browser.get("/?q=I-0")) == ["pi-01", "pi-02", "pi-03"]
    assert names_on(browser.get("/?q=03")) == ["pi-03"]
    assert names_on(browser.get("/?sort=cpu&dir=desc")) == ["pi-02", "pi-01", "pi-03"]
    assert names_on(browser.get("/?sort=cpu")) == ["pi-01", "pi-02", "pi-03"]
    assert names_on(browser.get("/?sort=name&dir=desc")) == ["pi-03", "pi-02", "pi-01"]
    # Nonsense in the query string is the default view, not an error.
    odd = browser.get("/?status=bogus&sort=%00&page=-4&per=x&dir=sideways")
    assert odd.status == 200 and names_on(odd) == ["pi-01", "pi-02", "pi-03"]


def test_a_large_fleet_is_paged(tmp_path: Path) -> None:
    many = [RosterEntry(f"n{i:04d}", "127.0.0.1") for i in range(250)]
    rig = build(tmp_path, many)
    try:
        b = Browser(rig)
        b.login()
        first = b.get("/")
        assert names_on(first)[:2] == ["n0000", "n0001"] and len(names_on(first)) == 100
        assert b"page 1 of 3" in first.body and b'rel="next"' in first.body
        last = b.get("/?page=3")
        assert names_on(last)[-1] == "n0249" and len(names_on(last)) == 50
        assert len(names_on(b.get("/?page=999"))) == 50  # past the end: the last page
    finally:
        rig.central.store.close()


# -- the client page and its buttons -----------------------------------------------------------


def test_the_client_page_shows_workloads_charts_and_the_log_tail(
    rig: Rig, browser: Browser, client_api: str
) -> None:
    wl = [
        {"name": "w", "state": "RUNNING", "pid": 4242, "runs": 3,
         "started_at": rig.clock.now - 75, "last_exit": {"reason": "exit", "code": 1}},
        {"name": "@client-api", "state": "RUNNING", "pid": 11, "internal": True},
    ]  # fmt: skip
    for i in range(3):
        system = {"cpu_percent": 10.0 + i * 20, "temperature_c": 50.0}
        assert (
            rig.hb("pi-01", "tok-1", api_url=client_api, workloads=wl, system=system).status == 200
        )
        rig.clock.now += 400  # past sample_every: one history sample each
    rig.central.coalescer.flush()
    assert rig.hb("pi-01", "tok-1", api_url=client_api, workloads=wl).status == 200
    page = browser.get("/clients/pi-01")
    html = page.body.decode()
    assert page.status == 200 and 'data-workload="w"' in html, html
    row = html[html.index('data-workload="w"') :].split("</tr>")[0]
    for text in ("RUNNING", "4242", "21 min", ">3<", "reason=exit, code=1", "restart"):
        assert text in row, text
    internal = html[html.index('data-workload="@client-api"') :].split("</tr>")[0]
    assert "internal" in internal and "<form" not in internal
    assert html.count("<polyline") == 2  # CPU and temperature have history; memory has none
    assert "no history yet" in html
    assert "Log: w" in html
    assert "&lt;b&gt;device&lt;/b&gt; line" in html and "<b>device</b>" not in html
    assert any(p.startswith("/api/v1/workloads/w/logs") for _, p, _, _ in FakeClientAPI.seen)


def test_a_button_restarts_through_the_clients_api_and_says_so(
    rig: Rig, browser: Browser, client_api: str
) -> None:
    rig.hb("pi-01", "tok-1", api_url=client_api, workloads=[{"name": "w", "state": "RUNNING"}])
    csrf = browser.csrf("/clients/pi-01?log=none")
    FakeClientAPI.seen = []
    browser.headers["X-Forwarded-For"] = "203.0.113.9"  # forged: the actor is the TCP peer
    r = browser.post("/clients/pi-01/workloads/w/restart", {"csrf": csrf})
    del browser.headers["X-Forwarded-For"]
    assert r.status == 303 and r.headers["location"].endswith("/clients/pi-01")
    assert FakeClientAPI.seen == [("POST", "/api/v1/workloads/w/restart", "Bearer tok-1", b"")]
    (event,) = rig.central.store.events(kind="action")
    assert (event["action"], event["result"]) == ("restart", "ok")
    assert event["actor"] == "dashboard@127.0.0.1"
    page = browser.get("/clients/pi-01?log=none").body.decode()
    assert 'class="flash ok"' in page and "restart w on pi-01: done" in page
    assert 'class="flash' not in browser.get("/clients/pi-01?log=none").body.decode()  # once
    for bad in ("@@x", "..", "."):  # names the API route refuses are refused here too
        assert browser.post(f"/clients/pi-01/workloads/{bad}/stop", {"csrf": csrf}).status == 404
    assert len(FakeClientAPI.seen) == 1
    # The client's refusal and an unreachable client are flash messages too, never a 500.
    browser.post("/clients/pi-01/workloads/missing/stop", {"csrf": csrf})
    page = browser.get("/clients/pi-01?log=none").body.decode()
    assert 'class="flash error"' in page and "stop missing: 404 no" in page
    rig.hb("pi-02", "tok-2", workloads=[{"name": "w", "state": "RUNNING"}])  # no api_url
    browser.post("/clients/pi-02/workloads/w/start", {"csrf": csrf})
    assert "no acceptable API URL" in browser.get("/clients/pi-02?log=none").body.decode()
    assert browser.post("/clients/pi-01/workloads/w/explode", {"csrf": csrf}).status == 404
    assert browser.post("/clients/nobody/workloads/w/start", {"csrf": csrf}).status == 404


# -- deployments and events --------------------------------------------------------------------


def test_deployments_and_events_pages(rig: Rig, browser: Browser) -> None:
    batches: list[dict[str, Any]] = [
        {"status": "succeeded", "clients": [{"name": "pi-01", "status": "ok"}]},
        {"status": "failed", "clients": [{"name": "pi-02", "status": "failed",
                                          "message": "health gate: FATAL"}]},
    ]  # fmt: skip
    body = {"release": "r7", "actor": "ops", "status": "failed", "batches": batches}
    r = call(rig.app, "POST", "/api/v1/deployments", token=OPERATOR, json_body=body)
    dep_id = r.json()["id"]
    listing = browser.get("/deployments").body.decode()
    assert f'href="/deployments/{dep_id}"' in listing and "r7" in listing
    detail = browser.get(f"/deployments/{dep_id}").body.decode()
    for text in ("Batch 1", "Batch 2", "pi-01", "pi-02", "health gate: FATAL", "failed"):
        assert text in detail, text
    rig.hb("pi-01", "tok-1", workloads=[{"name": "w", "state": "FATAL"}])
    rig.hb("pi-02", "tok-2", workloads=[{"name": "w", "state": "FATAL"}])
    rig.central.coalescer.flush()
    events = browser.get("/events").body.decode()
    assert "fatal_entered" in events and "pi-01" in events and "pi-02" in events
    filtered = browser.get("/events?client=pi-01").body.decode()
    assert "fatal_entered" in filtered and "pi-02" not in filtered
    assert browser.get("/events?client=%3Cx%3E&before=zz").status == 200
