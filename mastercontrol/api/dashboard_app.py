"""The web dashboard of the control host: HTML pages mounted in the central app.

Owns the dashboard's routes (login, fleet overview, client page with its buttons, deployments,
events, static files), its session cookie and CSRF checks (api/dashboard_auth.py) and the
security headers of every dashboard response. Pages are Bottle SimpleTemplates under
api/templates (which escape every {{ }}: names, workloads and log lines come from devices and
are untrusted); CSS and JS are files under api/static (no inline script, so the CSP can forbid
it). Data comes from the coalescer (latest states) and the store (history, events,
deployments); the buttons go through the same `forward()` as the API's remote control. Every
path outside `/api/` and `/metrics` is the dashboard's. `api_session_allows` lets a logged-in
browser call the JSON API with its session cookie (safe methods freely, others only with the
session's CSRF token in `X-CSRF-Token`). Must not import daemon/ or child/.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bottle

from mastercontrol.api import dashboard_views as v
from mastercontrol.api.auth import TokenCheck
from mastercontrol.api.central_proxy import ClientUnreachable, forward, path_segment
from mastercontrol.api.client_app import is_workload_name
from mastercontrol.api.dashboard_auth import Session, new_secret, same_secret
from mastercontrol.api.peer import peer_addr
from mastercontrol.fleet.fleetstore import ClientState
from mastercontrol.fleet.intake import NAME_RE

if TYPE_CHECKING:
    from mastercontrol.api.central_app import Central

HERE = Path(__file__).resolve().parent
# One list for every render: bottle caches compiled templates by the lookup list's id.
TEMPLATE_LOOKUP = [str(HERE / "templates")]
STATIC = str(HERE / "static")
COOKIE = "mc_session"
LOGIN_COOKIE = "mc_login"  # the login form's own CSRF token (double submit: no session yet)
MAX_FORM_BYTES = 16 * 1024
LOG_LINES = 40
HISTORY_HOURS = 6
REFRESH_SECONDS = 5
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
ACTIONS = ("start", "stop", "restart")
SAFE_METHODS = frozenset({"GET", "HEAD"})
CSRF_HEADER = "X-CSRF-Token"


def is_dashboard_path(path: str) -> bool:
    """Everything but the JSON API and /metrics; those keep their bearer-token rule."""
    return not (path == "/api" or path.startswith("/api/") or path == "/metrics")


def api_session_allows(central: Central) -> bool:
    """May this JSON API request go on with the dashboard's session cookie instead of the
    bearer token? A GET with a live session may; an unsafe method also needs the session's
    CSRF token in the X-CSRF-Token header (a form post cannot set one; SameSite=Strict
    already keeps the cookie off cross-site requests)."""
    session = central.sessions.get(bottle.request.get_cookie(COOKIE))
    if session is None:
        return False
    if bottle.request.method in SAFE_METHODS:
        return True
    return session.csrf_ok(bottle.request.get_header(CSRF_HEADER))


def _render(name: str, code: int = 200, **ctx: Any) -> str:
    bottle.response.status = code
    bottle.response.content_type = "text/html; charset=utf-8"
    return str(bottle.template(name, template_lookup=TEMPLATE_LOOKUP, v=v, **ctx))


LOG_TAIL_TIMEOUT = 2.0  # seconds a client page waits for the device's log tail


def install_dashboard(app: bottle.Bottle, central: Central) -> None:
    """Mount the dashboard's routes (and its session table) on the central `app`."""
    sessions = central.sessions
    operator = TokenCheck(central.operator_token)

    @app.hook("after_request")  # type: ignore[untyped-decorator]
    def _headers() -> None:
        path = bottle.request.path
        if not is_dashboard_path(path):
            return
        r = bottle.response
        r.set_header("Content-Security-Policy", CSP)
        r.set_header("X-Frame-Options", "DENY")
        r.set_header("X-Content-Type-Options", "nosniff")
        r.set_header("Referrer-Policy", "no-referrer")
        if path.startswith("/static/"):
            r.set_header("Cache-Control", "max-age=300")
        else:
            r.set_header("Cache-Control", "no-store")

    def secure() -> bool:
        # Behind a TLS-terminating proxy the request arrives as http with X-Forwarded-Proto
        # https (bottle's urlparts reads it): the cookie is then marked Secure.
        return bool(bottle.request.urlparts.scheme == "https")

    def set_cookie(name: str, value: str, path: str = "/", max_age: int | None = None) -> None:
        # Bottle writes a max_age of None as "Max-Age=None": pass it only when there is one.
        extra = {} if max_age is None else {"max_age": max_age}
        bottle.response.set_cookie(
            name, value, path=path, httponly=True, samesite="strict", secure=secure(), **extra
        )

    def current() -> Session | None:
        session = sessions.get(bottle.request.get_cookie(COOKIE))
        if session is None and not operator.required:
            # No operator token (loopback only): everyone on this host is the operator, but
            # a session still carries the CSRF token of the forms.
            session = sessions.login()
            set_cookie(COOKIE, session.sid)
        return session

    def page(name: str, session: Session, code: int = 200, **ctx: Any) -> str:
        return _render(
            name,
            code,
            csrf=session.csrf,
            flashes=session.take_flashes(),
            now=central.clock(),
            refresh=REFRESH_SECONDS,
            auth=operator.required,
            **ctx,
        )

    def login_redirect() -> Any:
        bottle.redirect("/login", 303)

    def form() -> bottle.FormsDict | None:
        """The POSTed form, or None if it is too large to be one of ours."""
        if bottle.request.content_length > MAX_FORM_BYTES:
            return None
        return bottle.request.forms

    def refused(session: Session | None, why: str) -> str:
        return _render(
            "refused",
            403,
            why=why,
            csrf=session.csrf if session else "",
            flashes=[],
            now=central.clock(),
            refresh=0,
            auth=operator.required,
        )

    def checked_post() -> tuple[Session | None, str | None]:
        """(session, None) for a POST with a session and its CSRF token, else (_, reason)."""
        session = current()
        if session is None:
            return None, "not logged in"
        fields = form()
        if fields is None or not session.csrf_ok(fields.get("csrf")):
            return session, "the form's CSRF token is missing or wrong: reload the page"
        return session, None

    # -- login ---------------------------------------------------------------------------------

    @app.get("/login")  # type: ignore[untyped-decorator]
    def login_page() -> Any:
        if current() is not None:
            bottle.redirect("/", 303)
        return show_login(200, None)

    def show_login(status: int, error: str | None) -> str:
        token = new_secret()
        set_cookie(LOGIN_COOKIE, token, path="/login", max_age=3600)
        return _render(
            "login",
            status,
            csrf=token,
            error=error,
            flashes=[],
            now=central.clock(),
            refresh=0,
            auth=operator.required,
        )

    @app.post("/login")  # type: ignore[untyped-decorator]
    def login() -> Any:
        fields = form()
        expected = bottle.request.get_cookie(LOGIN_COOKIE) or ""
        if fields is None or not expected or not same_secret(fields.get("csrf"), expected):
            return refused(None, "the login form's CSRF token is missing or wrong: reload it")
        # The peer's address, never X-Forwarded-For (a guesser would send a new one each
        # time). Behind a proxy every login shares one.
        addr = peer_addr(bottle.request.environ)
        throttle = central.login_throttle
        wait = throttle.retry_after(addr)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            bottle.response.set_header("Retry-After", str(seconds))
            return show_login(429, f"Too many failed logins: try again in {seconds} s.")
        token = (fields.get("token") or "").strip()
        if operator.required and not operator.allows(f"Bearer {token}"):
            throttle.failed(addr)
            return show_login(401, "That token is not the operator's token.")
        throttle.succeeded(addr)
        session = sessions.login()
        set_cookie(COOKIE, session.sid)
        bottle.response.delete_cookie(LOGIN_COOKIE, path="/login")
        bottle.redirect("/", 303)

    @app.post("/logout")  # type: ignore[untyped-decorator]
    def logout() -> Any:
        session, problem = checked_post()
        if problem is not None:
            return refused(session, problem)
        assert session is not None
        sessions.logout(session.sid)
        bottle.response.delete_cookie(COOKIE, path="/")
        bottle.redirect("/login", 303)

    # -- pages ---------------------------------------------------------------------------------

    @app.get("/")  # type: ignore[untyped-decorator]
    def overview() -> Any:
        session = current()
        if session is None:
            return login_redirect()
        mono = central.coalescer.monotonic()  # liveness: one reading for the whole page
        query = v.parse_query(bottle.request.query)
        states = central.coalescer.all()
        ov = v.overview(((s, central.coalescer.liveness(s, mono)) for s in states), query)
        return page("overview", session, ov=ov, in_grace=central.coalescer.rule.in_grace(mono))

    def client_or_none(name: str) -> ClientState | None:
        return central.coalescer.get(name) if NAME_RE.fullmatch(name) else None

    @app.get("/clients/<name>")  # type: ignore[untyped-decorator]
    def client_page(name: str) -> Any:
        session = current()
        if session is None:
            return login_redirect()
        state = client_or_none(name)
        if state is None:
            return page("missing", session, 404, what=f"No client named {name!r}.")
        now = central.clock()
        status = str(central.coalescer.liveness(state))
        workloads = v.workload_rows(state, now)
        since = now - HISTORY_HOURS * 3600
        charts = [
            v.chart(
                title, unit, central.store.history(state.name, metric, since), since, now, fixed
            )
            for title, unit, metric, fixed in (
                ("CPU", "%", "cpu_percent", (0.0, 100.0)),
                ("Memory", "%", "memory_used_percent", (0.0, 100.0)),
                ("Temperature", "°C", "temperature_c", None),
            )
        ]
        names = [str(w["name"]) for w in workloads]
        wanted = bottle.request.query.get("log") or next(
            (str(w["name"]) for w in workloads if not w.get("internal")), None
        )
        log_name = wanted if wanted in names else None
        log_lines, log_error = log_tail(state, status, log_name)
        return page(
            "client",
            session,
            c=state,
            status=status,
            row=v.make_row(state, status),
            workloads=workloads,
            charts=charts,
            hours=HISTORY_HOURS,
            log_name=log_name,
            log_lines=log_lines,
            log_error=log_error,
            actions=ACTIONS,
        )

    def log_tail(state: ClientState, status: str, name: str | None) -> tuple[list[str], str | None]:
        if name is None:
            return [], None
        if status != "online":
            return [], f"the client is {v.STATUS_LABEL.get(status, status)}: no log tail"
        path = f"/api/v1/workloads/{path_segment(name)}/logs?lines={LOG_LINES}"
        try:
            # Every refresh of an open client page asks again: a hung device must not hold
            # one of the central's threads for the whole client_timeout each time.
            reply = forward(
                central, state, "GET", path, action=None, workload=name, actor="",
                timeout=min(LOG_TAIL_TIMEOUT, central.client_timeout),
            )  # fmt: skip
        except ClientUnreachable as exc:
            return [], exc.message
        body = reply.body if isinstance(reply.body, dict) else {}
        if reply.status >= 400:
            return [], f"the client answered {reply.status}: {_message(body)}"
        lines = body.get("lines")
        return ([str(line) for line in lines] if isinstance(lines, list) else []), None

    @app.post("/clients/<name>/workloads/<workload>/<action>")  # type: ignore[untyped-decorator]
    def control(name: str, workload: str, action: str) -> Any:
        session, problem = checked_post()
        if problem is not None:
            return refused(session, problem)
        assert session is not None
        state = client_or_none(name)
        if state is None or action not in ACTIONS or not is_workload_name(workload):
            return page("missing", session, 404, what="No such client, workload or action.")
        actor = f"dashboard@{peer_addr(bottle.request.environ)}"
        path = f"/api/v1/workloads/{path_segment(workload)}/{action}"
        try:
            reply = forward(
                central, state, "POST", path, action=action, workload=workload, actor=actor
            )
        except ClientUnreachable as exc:
            session.flash("error", f"{action} {workload}: {exc.message}")
        else:
            if reply.status < 400:
                session.flash("ok", f"{action} {workload} on {state.name}: done")
            else:
                body = reply.body if isinstance(reply.body, dict) else {}
                session.flash("error", f"{action} {workload}: {reply.status} {_message(body)}")
        bottle.redirect(f"/clients/{path_segment(state.name)}", 303)

    @app.get("/deployments")  # type: ignore[untyped-decorator]
    def deployments() -> Any:
        session = current()
        if session is None:
            return login_redirect()
        offset = v.int_in(bottle.request.query.get("offset"), 0, 0, 10**9)
        found = central.store.deployments(51, offset)
        return page(
            "deployments", session, deployments=found[:50], offset=offset, more=len(found) > 50
        )

    @app.get("/deployments/<deployment_id:int>")  # type: ignore[untyped-decorator]
    def deployment(deployment_id: int) -> Any:
        session = current()
        if session is None:
            return login_redirect()
        found = central.store.deployment(deployment_id) if deployment_id < 2**63 else None
        if found is None:
            return page("missing", session, 404, what=f"No deployment {deployment_id}.")
        return page("deployment", session, d=found)

    @app.get("/events")  # type: ignore[untyped-decorator]
    def events() -> Any:
        session = current()
        if session is None:
            return login_redirect()
        client = bottle.request.query.get("client") or None
        if client is not None and not NAME_RE.fullmatch(client):
            client = None
        before = v.int_in(bottle.request.query.get("before"), 0, 0, 2**62) or None
        found = central.store.events(client=client, before_id=before, limit=100)
        return page("events", session, events=found, client=client)

    @app.get("/static/<filename:re:[a-z]+\\.(css|js)>")  # type: ignore[untyped-decorator]
    def static(filename: str) -> Any:
        return bottle.static_file(filename, root=STATIC)


def _message(body: dict[str, Any]) -> str:
    err = body.get("error")
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return str(err["message"])[:300]
    return "refused"
