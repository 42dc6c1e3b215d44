"""The client HTTP API of one device: a Bottle app over the master's IPC socket.

Owns the routes under `/api/v1` and `/metrics` and the checking of everything a request carries
(names, query values, JSON bodies) before any of it reaches the master. `create_client_app()`
builds a fresh app (no module-level routes); the master is reached only through the
MasterClient façade of mastercontrol/ipc. Every error is JSON (errors.py),
every route but `health` needs the bearer token (auth.py). Must not import daemon/ or child/.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import bottle

from mastercontrol import __version__
from mastercontrol.api import metrics
from mastercontrol.api import openapi as openapi_doc
from mastercontrol.api.auth import TokenCheck
from mastercontrol.api.body import read_json
from mastercontrol.api.errors import APIError, from_ipc, install_json_errors, unreachable
from mastercontrol.errors import IPCError
from mastercontrol.fleet.sysmetrics import system_metrics
from mastercontrol.ipc.client import DaemonUnreachable, MasterClient
from mastercontrol.release import current_release

PREFIX = "/api/v1"
HEALTH_PATH = f"{PREFIX}/health"
MAX_LOG_LINES = 10000  # the master's own limit for `logs`
MAX_FILES = 500  # files in one config push
# A workload name as config files allow it, or an internal one (`@client-api`); never a path.
_NAME_RE = re.compile(r"@?[A-Za-z0-9_.-]{1,128}")
# A workload file of a config push: a plain YAML file name, no directory, not hidden.
_FILE_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}\.ya?ml")
RESERVED_FILES = frozenset({"daemon.yaml", "daemon.yml", "inventory.yaml", "inventory.yml"})
_TRUE, _FALSE = frozenset({"1", "true", "yes"}), frozenset({"0", "false", "no"})

T = TypeVar("T")


def ask(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """One request to the master; its failures as HTTP errors."""
    try:
        return call(*args, **kwargs)
    except IPCError as exc:
        raise from_ipc(exc) from None
    except DaemonUnreachable as exc:  # no socket, refused, not permitted, timed out
        raise unreachable(f"the master does not answer: {exc}") from None


def is_workload_name(name: str) -> bool:
    """A name a workload (or internal service) may have; never `.`, `..` or `@@x`."""
    return bool(_NAME_RE.fullmatch(name)) and name.strip(".") != ""


def workload_name(name: str) -> str:
    if not is_workload_name(name):
        raise APIError(400, "bad_request", "not a valid workload name")
    return name


def query_int(name: str, default: int, lo: int, hi: int) -> int:
    raw = bottle.request.query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not lo <= int(raw) <= hi:
        raise APIError(400, "bad_request", f"{name} must be an integer from {lo} to {hi}")
    return int(raw)


def query_bool(name: str) -> bool:
    raw = bottle.request.query.get(name)
    if raw is None:
        return False
    raw = raw.lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise APIError(400, "bad_request", f"{name} must be 1 or 0 (true or false)")


def config_push(body: Any) -> tuple[dict[str, str], bool]:
    """The `files` and `replace` of a PUT config body, checked before the master sees them."""
    if not isinstance(body, dict):
        raise APIError(400, "bad_request", "body must be a JSON object")
    unknown = sorted(set(body) - {"files", "replace"})
    if unknown:
        raise APIError(400, "bad_request", f"unknown field(s): {', '.join(unknown)}")
    files, replace = body.get("files"), body.get("replace", False)
    if not isinstance(replace, bool):
        raise APIError(400, "bad_request", "replace must be true or false")
    if not isinstance(files, dict) or not files:
        raise APIError(400, "bad_request", "files must be an object of file name -> YAML text")
    if len(files) > MAX_FILES:
        raise APIError(400, "bad_request", f"at most {MAX_FILES} files per push")
    for fname, text in files.items():
        if not _FILE_RE.fullmatch(fname) or fname.lower() in RESERVED_FILES:
            raise APIError(
                400,
                "bad_request",
                f"{fname[:140]!r} is not a workload file name (NAME.yaml: letters, digits, "
                "'_', '.', '-'; daemon.yaml and inventory.yaml cannot be pushed)",
            )
        if not isinstance(text, str):
            raise APIError(400, "bad_request", f"files[{fname!r}] must be a string of YAML")
    return files, replace


class KnownQuery:
    """Bottle plugin: a query parameter the route does not take is a 400, not silently ignored
    (a typo such as `?dryrun=1` must not reload for real). Routes name theirs: `query=(...)`."""

    name = "known_query"
    api = 2

    def apply(self, callback: Callable[..., Any], route: Any) -> Callable[..., Any]:
        allowed = frozenset(route.config.get("query", ()))

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            unknown = sorted(set(bottle.request.query.keys()) - allowed)
            if unknown:
                shown = ", ".join(repr(name[:40]) for name in unknown[:5])
                raise APIError(400, "bad_request", f"unknown query parameter(s): {shown}")
            return callback(*args, **kwargs)

        return wrapper


def create_client_app(
    master: MasterClient,
    token: str | None,
    *,
    disk_paths: Mapping[str, Path] | None = None,
    openapi_path: Path | None = None,
) -> bottle.Bottle:
    """The client API app. `token` None means no auth (allowed on loopback only)."""
    app = bottle.Bottle()
    app.config["catchall"] = True  # an uncaught bug is a JSON 500, its traceback in the log
    install_json_errors(app)
    app.install(KnownQuery())
    check = TokenCheck(token)
    disks = dict(disk_paths or {})

    @app.hook("before_request")  # type: ignore[untyped-decorator]
    def _authorize() -> None:
        # Before routing, so an unauthenticated caller learns nothing, not even which routes exist.
        if bottle.request.path == HEALTH_PATH:
            return
        # From the environ, not request.get_header(): Bottle re-decodes header text as UTF-8 and
        # raises on anything else, which would turn a garbage header into a 500.
        if not check.allows(bottle.request.environ.get("HTTP_AUTHORIZATION")):
            err = APIError(401, "unauthorized", "missing or invalid bearer token")
            err.add_header("WWW-Authenticate", 'Bearer realm="mastercontrol"')
            raise err

    @app.get(HEALTH_PATH)  # type: ignore[untyped-decorator]
    def health() -> dict[str, Any]:
        daemon = ask(master.ping)
        return {"status": "stopping" if daemon.get("shutting_down") else "ok"}

    @app.get(f"{PREFIX}/status")  # type: ignore[untyped-decorator]
    def status() -> dict[str, Any]:
        daemon = ask(master.ping)
        return {
            "daemon": {
                key: daemon.get(key)
                for key in (
                    "version",
                    "pid",
                    "started_at",
                    "uptime_seconds",
                    "workloads",
                    "status",
                    "shutting_down",
                    "config_problems",
                )
            },
            "api_version": __version__,
            "release": current_release(),
            "system": system_metrics(disks),
        }

    @app.get(f"{PREFIX}/workloads", query=("tag",))  # type: ignore[untyped-decorator]
    def workloads() -> dict[str, Any]:
        tag = bottle.request.query.get("tag") or None
        return ask(master.workloads, tag=tag, metrics=True)

    @app.get(f"{PREFIX}/workloads/<name>")  # type: ignore[untyped-decorator]
    def workload(name: str) -> dict[str, Any]:
        return ask(master.status, workload_name(name))

    @app.post(f"{PREFIX}/workloads/<name>/<action:re:start|stop|restart>")  # type: ignore[untyped-decorator]
    def control(name: str, action: str) -> dict[str, Any]:
        name = workload_name(name)
        call = {"start": master.start, "stop": master.stop, "restart": master.restart}[action]
        return ask(call, name)

    @app.get(f"{PREFIX}/workloads/<name>/logs", query=("lines",))  # type: ignore[untyped-decorator]
    def logs(name: str) -> dict[str, Any]:
        name = workload_name(name)
        lines = query_int("lines", 50, 0, MAX_LOG_LINES)
        return ask(master.logs, name, lines=lines)

    @app.put(f"{PREFIX}/config")  # type: ignore[untyped-decorator]
    def put_config() -> dict[str, Any]:
        files, replace = config_push(read_json(bottle.request))
        return ask(master.put_config, files, replace=replace)

    @app.post(f"{PREFIX}/config/rollback")  # type: ignore[untyped-decorator]
    def rollback() -> dict[str, Any]:
        return ask(master.rollback_config)

    @app.post(f"{PREFIX}/reload", query=("dry_run",))  # type: ignore[untyped-decorator]
    def reload() -> dict[str, Any]:
        return ask(master.reload, dry_run=query_bool("dry_run"))

    @app.get("/metrics")  # type: ignore[untyped-decorator]
    def prometheus() -> str:
        listing = ask(master.workloads, metrics=True)  # one round trip, whatever the count
        system = system_metrics(disks)
        bottle.response.content_type = metrics.CONTENT_TYPE
        return metrics.exposition(listing, system)

    @app.get(f"{PREFIX}/openapi.yaml")  # type: ignore[untyped-decorator]
    def openapi() -> bytes:
        return openapi_doc.document("client", openapi_path)

    return app
