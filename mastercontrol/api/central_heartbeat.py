"""The fast path of `POST /api/v1/heartbeat`: a WSGI wrapper around the central app.

Owns nothing but speed. At fleet scale the heartbeat is nearly every request the central
serves, and Bottle's request and response objects, routing, hooks and plugins cost more than
checking, decoding and ingesting the heartbeat itself (bench/RESULTS.md, "Central API under
load"). So a heartbeat that is accepted is handled here with the same steps as the route in
api/central_app.py: the client's token (fleet/roster.py), api/body.py's `decode` (UTF-8 only,
no NaN/Infinity, at most MAX_DEPTH levels: what the route accepts, no more), the intake's
`parse_heartbeat`, the coalescer's `ingest`. Anything else
(a refused token, a wrong content type, a bad or oversized body, another method or path) goes
to the Bottle app with the body it carried, so every refusal is still written, counted and
answered in one place: this module never builds an error (a heartbeat shed for load is
answered before it, by api/overload.py). Imports the stdlib and api/; never daemon/, child/ or
bottle.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any

from mastercontrol.api.body import decode
from mastercontrol.api.central_app import HEARTBEAT_MAX_BYTES, HEARTBEAT_PATH, Central, bearer
from mastercontrol.api.errors import APIError
from mastercontrol.fleet.intake import HeartbeatInvalid, parse_heartbeat
from mastercontrol.fleet.roster import Verdict

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def with_heartbeat_fast_path(app: WSGIApp, central: Central) -> WSGIApp:
    """`app`, with accepted heartbeats answered before Bottle sees them."""

    def fast(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != HEARTBEAT_PATH or environ.get("REQUEST_METHOD") != "POST":
            return app(environ, start_response)
        reply = _accept(environ, central)
        if reply is None:
            return app(environ, start_response)
        start_response(
            "200 OK",
            [("Content-Type", "application/json"), ("Content-Length", str(len(reply)))],
        )
        return [reply]

    return fast


def _accept(environ: dict[str, Any], central: Central) -> bytes | None:
    """The 200 body for an acceptable heartbeat, or None (then `environ` is as it came, its
    body re-readable, for the Bottle route to refuse it)."""
    token = bearer(environ.get("HTTP_AUTHORIZATION"))
    roster = central.roster
    if not roster.knows_token(token):
        return None
    ctype = str(environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    if ctype != "application/json" or not 0 < length <= HEARTBEAT_MAX_BYTES:
        return None
    data = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(data)  # for the Bottle route, if it gets the request
    try:
        body = decode(data)
    except APIError:
        return None
    name = body.get("client_name") if isinstance(body, dict) else None
    if not isinstance(name, str) or roster.check_heartbeat(name, token) != Verdict.OK:
        return None
    try:
        hb = parse_heartbeat(body)
    except HeartbeatInvalid:
        return None
    state = central.coalescer.ingest(hb)
    answer = {"accepted": True, "client": state.name, "received_at": state.last_seen}
    return json.dumps(answer).encode()
