"""The central API of the control host: a Bottle app over the coalescer and the fleet store.

Owns the routes under `/api/v1` and `/metrics` of the control host and the checking of what a
request carries. `create_central_app(central)` builds a fresh app (no module-level routes).
Heartbeats authenticate with a client's token (fleet/roster.py: 401 unknown token, 403 another
client's token or an unlisted name, both before the body is validated); every other route needs
the operator's token. Latest states are read from the coalescer (memory), history, events and
deployments from the store. Remote control is proxied to the client's own API
(api/central_proxy.py) at the URL the roster approves. JSON errors only (api/errors.py).
Must not import daemon/ or child/.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bottle

from mastercontrol import __version__
from mastercontrol.api import central_views as views
from mastercontrol.api import openapi as openapi_doc
from mastercontrol.api.auth import TokenCheck
from mastercontrol.api.body import read_json
from mastercontrol.api.central_proxy import ClientUnreachable, forward, path_segment
from mastercontrol.api.client_app import query_bool, query_int, workload_name
from mastercontrol.api.dashboard_app import api_session_allows, install_dashboard, is_dashboard_path
from mastercontrol.api.dashboard_auth import LoginThrottle, Sessions
from mastercontrol.api.errors import APIError, install_json_errors
from mastercontrol.api.intake_link import WorkerCounts
from mastercontrol.api.peer import peer_addr
from mastercontrol.fleet.coalescer import Coalescer
from mastercontrol.fleet.fleetstore import METRIC_COLUMNS, ClientState, FleetStore
from mastercontrol.fleet.intake import NAME_RE, HeartbeatInvalid, parse_heartbeat
from mastercontrol.fleet.liveness import ALL_STATUSES
from mastercontrol.fleet.roster import Roster, Verdict

PREFIX = "/api/v1"
HEARTBEAT_PATH = f"{PREFIX}/heartbeat"
HEARTBEAT_MAX_BYTES = 256 * 1024  # a heartbeat is ~2 KB; a config push may be 1 MiB
MAX_PAGE = 1000
MAX_ID = 2**63 - 1  # sqlite's INTEGER range: a larger id cannot exist
DAY = 86400.0

_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +(\S{1,4096})")


@dataclass
class Central:
    """Everything the routes use; the service builds one, tests build their own."""

    coalescer: Coalescer
    store: FleetStore
    roster: Roster  # replaced as a whole on inventory reload (one attribute store: atomic)
    operator_token: str | None
    client_timeout: float = 10.0
    openapi_path: Path | None = None
    clock: Callable[[], float] = time.time
    rejected: Counter[str] = field(default_factory=Counter)
    flush_errors: int = 0
    login_throttle: LoginThrottle = field(default_factory=LoginThrottle)
    sessions: Sessions = field(default_factory=Sessions)  # the dashboard's logins
    # The intake workers' counts (api/intake_owner.py), for /metrics; none without workers.
    intake_counts: Callable[[], list[WorkerCounts]] = list
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reject(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self.rejected[reason] += count


def bearer(header: str | None) -> str | None:
    match = _BEARER.fullmatch((header or "").strip())
    return match.group(1) if match else None


def client_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise APIError(400, "bad_request", "not a valid client name")
    return name


def _unauthorized() -> APIError:
    err = APIError(401, "unauthorized", "missing or invalid bearer token")
    err.add_header("WWW-Authenticate", 'Bearer realm="mastercontrol-central"')
    return err


def create_central_app(central: Central) -> bottle.Bottle:
    """The central API app. `central.operator_token` None means no auth (loopback only)."""
    app = bottle.Bottle()
    app.config["catchall"] = True  # an uncaught bug is a JSON 500, its traceback in the log
    install_json_errors(app)
    operator = TokenCheck(central.operator_token)

    @app.hook("before_request")  # type: ignore[untyped-decorator]
    def _authorize() -> None:
        # Heartbeats carry a client's token (checked in the route); the dashboard's pages
        # check their own session cookie (api/dashboard_app.py); the rest is the operator's:
        # the bearer token, or a logged-in dashboard's session cookie (its CSRF token too
        # for anything but GET).
        path = bottle.request.path
        if path == HEARTBEAT_PATH or is_dashboard_path(path):
            return
        if operator.allows(bottle.request.environ.get("HTTP_AUTHORIZATION")):
            return
        if not api_session_allows(central):
            raise _unauthorized()

    def known(name: str) -> ClientState:
        state = central.coalescer.get(client_name(name))
        if state is None:
            raise APIError(404, "unknown_client", f"no client named {name!r}")
        return state

    @app.post(HEARTBEAT_PATH)  # type: ignore[untyped-decorator]
    def heartbeat() -> dict[str, Any]:
        token = bearer(bottle.request.environ.get("HTTP_AUTHORIZATION"))
        roster = central.roster
        if not roster.knows_token(token):
            central.reject("unauthorized")
            raise _unauthorized()
        body = read_json(bottle.request, HEARTBEAT_MAX_BYTES)
        name = body.get("client_name") if isinstance(body, dict) else None
        if isinstance(name, str):
            verdict = roster.check_heartbeat(name, token)
            if verdict == Verdict.UNLISTED:
                central.reject("unlisted")
                raise APIError(403, "unlisted_client", "the inventory does not list this client")
            if verdict != Verdict.OK:
                central.reject("wrong_client")
                raise APIError(403, "forbidden", "this token is not this client's")
        try:
            hb = parse_heartbeat(body)
        except HeartbeatInvalid as exc:
            central.reject("invalid")
            raise APIError(
                422, "invalid_heartbeat", "the heartbeat is not valid", problems=exc.problems
            ) from None
        state = central.coalescer.ingest(hb)
        return {"accepted": True, "client": state.name, "received_at": state.last_seen}

    @app.get(f"{PREFIX}/fleet")  # type: ignore[untyped-decorator]
    def fleet() -> dict[str, Any]:
        return views.fleet_summary(central.coalescer, central.coalescer.all())

    @app.get(f"{PREFIX}/clients")  # type: ignore[untyped-decorator]
    def clients() -> dict[str, Any]:
        q = bottle.request.query
        status = q.get("status") or None
        if status is not None and status not in ALL_STATUSES:
            raise APIError(400, "bad_request", f"status must be one of {', '.join(ALL_STATUSES)}")
        limit = query_int("limit", 100, 1, MAX_PAGE)
        offset = query_int("offset", 0, 0, 10**9)
        rows = views.filter_clients(
            central.coalescer, central.coalescer.all(), status=status,
            tag=q.get("tag") or None, release=q.get("release") or None,
            search=q.get("q") or None,
        )  # fmt: skip
        page = rows[offset : offset + limit]
        return {
            "total": len(rows),
            "offset": offset,
            "clients": [views.client_summary(c, s) for c, s in page],
        }

    @app.get(f"{PREFIX}/clients/<name>")  # type: ignore[untyped-decorator]
    def client(name: str) -> dict[str, Any]:
        state = known(name)
        status = central.coalescer.liveness(state)
        view = views.client_detail(state, status)
        view["control_url"] = central.roster.target_url(state.name, state.api_url)
        return view

    @app.get(f"{PREFIX}/clients/<name>/workloads")  # type: ignore[untyped-decorator]
    def client_workloads(name: str) -> dict[str, Any]:
        state = known(name)
        return {
            "client": state.name,
            "status": central.coalescer.liveness(state),
            "last_seen": state.last_seen,
            "workloads": list(state.workloads),
        }

    @app.get(f"{PREFIX}/clients/<name>/history")  # type: ignore[untyped-decorator]
    def history(name: str) -> dict[str, Any]:
        state = known(name)
        metric = bottle.request.query.get("metric") or "cpu_percent"
        if metric not in METRIC_COLUMNS:
            raise APIError(400, "bad_request", f"metric must be one of {', '.join(METRIC_COLUMNS)}")
        now = central.clock()
        since = views.query_number(bottle.request.query.get("since"), "since", None)
        since = now - DAY if since is None else since
        limit = query_int("limit", 2000, 1, 10000)
        points = central.store.history(state.name, metric, since, limit)
        return {"client": state.name, "metric": metric, "since": since, "points": points}

    def proxy(name: str, method: str, path: str, action: str | None, body: Any = None) -> Any:
        """Forward to the client's API; `action` (None for reads) is recorded as an event."""
        state = known(name)
        actor = f"operator@{peer_addr(bottle.request.environ)}"
        workload = bottle.request.url_args.get("workload")
        try:
            reply = forward(central, state, method, path, action=action, workload=workload,
                            actor=actor, body=body)  # fmt: skip
        except ClientUnreachable as exc:
            raise APIError(exc.status, exc.code, exc.message) from None
        if reply.status >= 500:
            raise APIError(
                502, "client_error", f"the client answered {reply.status}",
                client_status=reply.status, client_error=views.error_of(reply.body),
            )  # fmt: skip
        bottle.response.status = reply.status
        if reply.status >= 400 and not views.is_error_body(reply.body):
            return {"error": {"code": f"http_{reply.status}", "message": "the client refused"}}
        return reply.body

    @app.post(f"{PREFIX}/clients/<name>/workloads/<workload>/<action:re:start|stop|restart>")  # type: ignore[untyped-decorator]
    def control(name: str, workload: str, action: str) -> Any:
        w = path_segment(workload_name(workload))
        return proxy(name, "POST", f"/api/v1/workloads/{w}/{action}", action)

    @app.get(f"{PREFIX}/clients/<name>/workloads/<workload>/logs")  # type: ignore[untyped-decorator]
    def logs(name: str, workload: str) -> Any:
        w = path_segment(workload_name(workload))
        lines = query_int("lines", 50, 0, 10000)
        return proxy(name, "GET", f"/api/v1/workloads/{w}/logs?lines={lines}", None)

    @app.post(f"{PREFIX}/clients/<name>/reload")  # type: ignore[untyped-decorator]
    def reload(name: str) -> Any:
        dry = "1" if query_bool("dry_run") else "0"
        return proxy(name, "POST", f"/api/v1/reload?dry_run={dry}", "reload")

    @app.put(f"{PREFIX}/clients/<name>/config")  # type: ignore[untyped-decorator]
    def put_config(name: str) -> Any:
        known(name)
        body = read_json(bottle.request)
        return proxy(name, "PUT", "/api/v1/config", "put_config", body=body)

    @app.get(f"{PREFIX}/deployments")  # type: ignore[untyped-decorator]
    def deployments() -> dict[str, Any]:
        limit = query_int("limit", 50, 1, MAX_PAGE)
        offset = query_int("offset", 0, 0, 10**9)
        return {"deployments": central.store.deployments(limit, offset)}

    @app.post(f"{PREFIX}/deployments")  # type: ignore[untyped-decorator]
    def create_deployment() -> dict[str, Any]:
        fields = views.deployment_fields(read_json(bottle.request), partial=False)
        bottle.response.status = 201
        return central.store.create_deployment(fields, central.clock())

    def unknown_deployment(deployment_id: int) -> APIError:
        return APIError(404, "unknown_deployment", f"no deployment {deployment_id}")

    @app.get(f"{PREFIX}/deployments/<deployment_id:int>")  # type: ignore[untyped-decorator]
    def deployment(deployment_id: int) -> dict[str, Any]:
        if not 0 <= deployment_id <= MAX_ID:
            raise unknown_deployment(deployment_id)
        found = central.store.deployment(deployment_id)
        if found is None:
            raise unknown_deployment(deployment_id)
        return found

    @app.route(f"{PREFIX}/deployments/<deployment_id:int>", method="PATCH")  # type: ignore[untyped-decorator]
    def patch_deployment(deployment_id: int) -> dict[str, Any]:
        if not 0 <= deployment_id <= MAX_ID:
            raise unknown_deployment(deployment_id)
        fields = views.deployment_fields(read_json(bottle.request), partial=True)
        found = central.store.update_deployment(deployment_id, fields, central.clock())
        if found is None:
            raise unknown_deployment(deployment_id)
        return found

    @app.get(f"{PREFIX}/events")  # type: ignore[untyped-decorator]
    def events() -> dict[str, Any]:
        q = bottle.request.query
        name = q.get("client") or None
        kind = q.get("kind") or None
        if kind is not None and kind not in views.EVENT_KINDS:
            raise APIError(
                400, "bad_request", f"kind must be one of {', '.join(views.EVENT_KINDS)}"
            )
        before = query_int("before_id", 0, 0, 2**62) or None
        since = views.query_number(q.get("since"), "since", None)
        limit = query_int("limit", 100, 1, MAX_PAGE)
        found = central.store.events(
            client=client_name(name) if name else None, kind=kind, since=since,
            before_id=before, limit=limit,
        )  # fmt: skip
        return {"events": found}

    @app.get(f"{PREFIX}/openapi.yaml")  # type: ignore[untyped-decorator]
    def openapi() -> bytes:
        return openapi_doc.document("central", central.openapi_path)

    @app.get("/metrics")  # type: ignore[untyped-decorator]
    def prometheus() -> str:
        bottle.response.content_type = views.METRICS_CONTENT_TYPE
        return views.exposition(central, central.coalescer.all())

    install_dashboard(app, central)
    app.config["mastercontrol.version"] = __version__
    return app
