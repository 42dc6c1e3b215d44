"""The fast path of `POST /api/v1/heartbeat`: a WSGI wrapper around the central app.

Owns nothing but speed. At fleet scale the heartbeat is nearly every request the central
serves, and Bottle's request and response objects, routing, hooks and plugins cost more than
checking, decoding and ingesting the heartbeat itself (bench/RESULTS.md, "Central API under
load"). So a heartbeat that is accepted is handled here with the same steps as the route in
api/central_app.py: the client's token (fleet/roster.py), api/body.py's `decode` (UTF-8 only,
no NaN/Infinity, at most MAX_DEPTH levels: what the route accepts, no more), the intake's
`parse_heartbeat`, the coalescer's `ingest` (in an intake worker: a hand-over to the central
process, api/central_intake.py). Anything else
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
from mastercontrol.api.overload import overloaded
from mastercontrol.fleet.intake import Heartbeat, HeartbeatInvalid, parse_heartbeat
from mastercontrol.fleet.roster import Roster, Verdict

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


# Takes an accepted heartbeat; returns its received_at, or None when it could not be taken
# (then the request goes on to `app`, which answers it); raises Busy when it cannot be taken
# now (answered 503 + Retry-After, as a shed heartbeat).
Take = Callable[[Heartbeat], float | None]


class Busy(Exception):
    """The heartbeat is acceptable, but whoever takes it cannot now: ask again later."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"busy: retry after {retry_after} s")
        self.retry_after = retry_after


def with_heartbeat_fast_path(app: WSGIApp, central: Central) -> WSGIApp:
    """`app`, with accepted heartbeats answered before Bottle sees them and ingested here."""

    def take(hb: Heartbeat) -> float:
        last_seen = central.coalescer.ingest(hb).last_seen
        assert last_seen is not None  # ingest has just set it
        return last_seen

    return with_fast_path(app, lambda: central.roster, take)


def with_fast_path(app: WSGIApp, roster_of: Callable[[], Roster], take: Take) -> WSGIApp:
    """`app`, with heartbeats that `roster_of()` accepts handed to `take` and answered 200;
    the intake workers (api/central_intake.py) hand them to the central process instead."""

    def fast(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != HEARTBEAT_PATH or environ.get("REQUEST_METHOD") != "POST":
            return app(environ, start_response)
        hb = accepted_heartbeat(environ, roster_of())
        if hb is None:
            return app(environ, start_response)
        try:
            received_at = take(hb)
        except Busy as busy:
            return overloaded(start_response, busy.retry_after)
        if received_at is None:
            return app(environ, start_response)
        answer = {"accepted": True, "client": hb.client_name, "received_at": received_at}
        reply = json.dumps(answer).encode()
        start_response(
            "200 OK",
            [("Content-Type", "application/json"), ("Content-Length", str(len(reply)))],
        )
        return [reply]

    return fast


def accepted_heartbeat(environ: dict[str, Any], roster: Roster) -> Heartbeat | None:
    """The heartbeat of an acceptable request, or None (then `environ` is as it came, its
    body re-readable, for the Bottle route to refuse it)."""
    token = bearer(environ.get("HTTP_AUTHORIZATION"))
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
        return parse_heartbeat(body)
    except HeartbeatInvalid:
        return None
