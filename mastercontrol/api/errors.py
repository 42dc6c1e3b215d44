"""JSON errors for every HTTP API: one error type, stable codes, one handler for every status.

Owns `APIError` (what a route raises), the mapping of the master's IPC error codes to HTTP
statuses, and `install_json_errors(app)`, which replaces Bottle's HTML error page for every
status (routing 404/405, body 413, uncaught 500) with `{"error": {"code", "message"}}`.
Never puts a traceback in a response. Imports bottle and the package's errors; not daemon/.
"""

from __future__ import annotations

import json
from typing import Any

import bottle

from mastercontrol.errors import IPCError

# Codes for statuses Bottle raises itself (router, body reader, uncaught exceptions).
_STATUS_CODES: dict[int, tuple[str, str]] = {
    400: ("bad_request", "bad request"),
    401: ("unauthorized", "missing or invalid bearer token"),
    404: ("not_found", "no such route"),
    405: ("method_not_allowed", "method not allowed on this route"),
    413: ("too_large", "request body too large"),
    415: ("unsupported_media_type", "request body must be application/json"),
    500: ("internal", "internal error (logged by the API service)"),
}

# The master's IPC error codes -> HTTP status. `internal` and `bad_reply` are the master's
# fault (502); a code this table does not know yet is a refusal of the master's (409).
_IPC_STATUS: dict[str, int] = {
    "unknown_workload": 404,
    "bad_request": 400,
    "bad_json": 400,
    "too_large": 413,
    "invalid_config": 422,
    "disabled": 409,
    "no_previous_config": 409,
    "shutting_down": 503,
    "busy": 503,
}


_MASTER_FAULTS = frozenset({"internal", "bad_reply", "permission_denied"})


def _status_of(code: str) -> int:
    if code in _MASTER_FAULTS:
        return 502
    return _IPC_STATUS.get(code, 409)


class APIError(bottle.HTTPError):  # type: ignore[misc]  # bottle ships no type hints
    """An HTTP error with a stable code; extra keys land in the `error` object."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(status, message)
        self.code = code
        self.message = message
        self.extra = extra


def from_ipc(exc: IPCError) -> APIError:
    """The HTTP face of an error reply from the master."""
    status = _status_of(exc.code)
    extra: dict[str, Any] = {}
    if exc.code == "invalid_config":
        extra["problems"] = problems_of(exc.details)
    return APIError(status, str(exc.code), str(exc) or str(exc.code), **extra)


def unreachable(message: str) -> APIError:
    return APIError(503, "master_unreachable", message)


def problems_of(details: object) -> list[dict[str, Any]]:
    """`details.problems` as `[{file, line, field, message}]`.

    The master sends dicts for a config push and `FILE:LINE: field: message` strings for a
    reload; both come out as dicts so a client parses one shape."""
    raw = details.get("problems", []) if isinstance(details, dict) else []
    out: list[dict[str, Any]] = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict):
            out.append(
                {
                    "file": str(item.get("file", "")),
                    "line": item.get("line") if isinstance(item.get("line"), int) else None,
                    "field": item.get("field") if isinstance(item.get("field"), str) else None,
                    "message": str(item.get("message", "")),
                }
            )
        else:
            out.append(parse_problem(str(item)))
    return out


def parse_problem(text: str) -> dict[str, Any]:
    """Split `FILE:LINE: field: message` (field optional; LINE optional)."""
    file, line, rest = text, None, ""
    parts = text.split(": ", 1)
    head, rest = (parts[0], parts[1]) if len(parts) == 2 else (text, "")
    name, sep, num = head.rpartition(":")
    if sep and num.isdigit():
        file, line = name, int(num)
    else:
        file = head
    field, sep, message = rest.partition(": ")
    if not sep or " " in field:
        field, message = "", rest
    return {"file": file, "line": line, "field": field or None, "message": message or text}


def error_json(code: str, message: str, **extra: Any) -> str:
    return json.dumps({"error": {"code": code, "message": message, **extra}})


def _handle(res: bottle.HTTPError) -> str:
    bottle.response.content_type = "application/json"
    if isinstance(res, APIError):
        return error_json(res.code, res.message, **res.extra)
    status = res.status_code
    code, message = _STATUS_CODES.get(status, (f"http_{status}", bottle.HTTP_CODES.get(status, "")))
    return error_json(code, str(message))


def install_json_errors(app: bottle.Bottle) -> None:
    """Every error status of `app` answers in JSON, never with Bottle's HTML page."""
    app.default_error_handler = _handle
