"""Reading a JSON request body safely: media type, size cap, strict JSON, nesting depth.

Owns `read_json(request, max_bytes)`. Every way a body can be bad ends in an `APIError` with a
4xx status: 415 (not application/json), 413 (over the cap, checked on Content-Length first and
again on the bytes actually read), 400 (not UTF-8, not JSON, NaN/Infinity, nested deeper than
`MAX_DEPTH`). Imports bottle only through the request object it is given; not daemon/.
"""

from __future__ import annotations

import json
from typing import Any

from mastercontrol.api.errors import APIError
from mastercontrol.ipc.protocol import json_depth

MAX_BODY_BYTES = 1024 * 1024  # the app's cap; Waitress's own limit sits above it (server.py)
MAX_DEPTH = 32  # a config push is 2 levels deep; anything near this is an attack or a bug


def read_json(request: Any, max_bytes: int = MAX_BODY_BYTES) -> Any:
    """The decoded body of a Bottle `request`, or an APIError saying what is wrong with it."""
    ctype = str(request.content_type or "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise APIError(415, "unsupported_media_type", "request body must be application/json")
    if _content_length(request.environ) > max_bytes:
        raise APIError(413, "too_large", f"request body exceeds {max_bytes} bytes")
    data = request.body.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise APIError(413, "too_large", f"request body exceeds {max_bytes} bytes")
    return decode(data)


def _content_length(environ: dict[str, Any]) -> int:
    # Bottle's own `content_length` raises ValueError on a garbled header: that would be a 500.
    try:
        return int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise APIError(400, "bad_request", "Content-Length is not a number") from None


def decode(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise APIError(400, "bad_json", "request body is not UTF-8") from None
    if not text.strip():
        raise APIError(400, "bad_json", "request body is empty")
    try:
        value = json.loads(text, parse_constant=no_constants)
    except RecursionError:
        raise _too_deep() from None
    except ValueError as exc:  # JSONDecodeError, and no_constants
        raise APIError(400, "bad_json", f"request body is not valid JSON: {exc}") from None
    if depth(value) > MAX_DEPTH:
        raise _too_deep()
    return value


def depth(value: Any) -> int:
    """Nesting depth of decoded JSON (a scalar is 0); the IPC protocol's one walker."""
    return json_depth(value, MAX_DEPTH)


def no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _too_deep() -> APIError:
    return APIError(400, "bad_json", f"request body is nested deeper than {MAX_DEPTH} levels")
