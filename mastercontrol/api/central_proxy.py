"""The central's calls to one client's API: one request, a short timeout, no redirects.

Owns `call_client()`: it sends one request to a URL the roster approved (fleet/roster.py) and
returns the client's status and JSON body, or raises `ClientUnreachable` with the HTTP status
the central answers (502 refused, unresolvable, a bad or redirecting reply; 504 timed out).
Redirects are never followed: a client could otherwise send the central anywhere. Replies are
read up to a cap. `forward()` is the one way the API's remote-control routes and the
dashboard's buttons reach a client: the roster's URL and token, the call, and the action
recorded as an event. Imports the standard library and fleet/; not bottle, daemon/ or child/.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from mastercontrol.fleet.fleetstore import ClientState, Event

if TYPE_CHECKING:
    from mastercontrol.api.central_app import Central

MAX_REPLY_BYTES = 8 * 1024 * 1024  # a log tail of 10,000 long lines still fits


class ClientUnreachable(Exception):
    """The client gave no usable answer; `status` is what the central answers (502/504)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any


def path_segment(value: str) -> str:
    """One URL path segment (names are validated already; this keeps it so)."""
    return quote(value, safe="")


def call_client(
    base_url: str,
    method: str,
    path: str,
    token: str | None,
    *,
    body: Any = None,
    timeout: float = 10.0,
) -> Reply:
    """`method` `base_url + path` with the client's bearer token and an optional JSON body."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        raise ClientUnreachable(502, "client_unreachable", "the client's URL is invalid") from None
    conn_type = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    conn = conn_type(host, port, timeout=timeout)
    headers = {"Accept": "application/json", "User-Agent": "mastercontrol-central"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        headers["Content-Type"] = "application/json"
    full_path = parts.path.rstrip("/") + path
    try:
        conn.request(method, full_path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read(MAX_REPLY_BYTES + 1)
        status = resp.status
    except TimeoutError:
        raise ClientUnreachable(
            504, "client_timeout", f"the client did not answer within {timeout:g} s"
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        raise ClientUnreachable(
            502, "client_unreachable", f"cannot reach the client: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        conn.close()
    if len(raw) > MAX_REPLY_BYTES:
        raise ClientUnreachable(502, "bad_client_reply", "the client's reply is too large")
    if 300 <= status < 400:
        raise ClientUnreachable(502, "bad_client_reply", "the client answered with a redirect")
    try:
        decoded = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, ValueError):
        raise ClientUnreachable(
            502, "bad_client_reply", f"the client answered {status} without JSON"
        ) from None
    return Reply(status, decoded)


def forward(
    central: Central,
    state: ClientState,
    method: str,
    path: str,
    *,
    action: str | None,
    workload: str | None,
    actor: str,
    body: Any = None,
    timeout: float | None = None,
) -> Reply:
    """One call to the client's API at the URL the roster approves, with that client's token,
    within `timeout` (default `central.client_timeout`);
    `action` (None for reads) is recorded as an event with its result. Raises
    ClientUnreachable (also when the central knows no acceptable URL). Used by the API's
    remote-control routes and by the dashboard's buttons alike."""

    def note(result: str) -> None:
        if action is not None:
            central.store.add_event(
                Event(at=central.clock(), kind="action", client=state.name, workload=workload,
                      actor=actor, action=action, result=result)
            )  # fmt: skip

    target = central.roster.target_url(state.name, state.api_url)
    if target is None:
        note("no_api_url")
        raise ClientUnreachable(
            502, "client_unreachable",
            "the central has no acceptable API URL for this client (the inventory gives "
            "none, and no heartbeat URL on the inventory host was seen)",
        )  # fmt: skip
    token = central.roster.call_token(state.name)
    try:
        wait = central.client_timeout if timeout is None else timeout
        reply = call_client(target, method, path, token, body=body, timeout=wait)
    except ClientUnreachable as exc:
        note(exc.code)
        raise
    note("ok" if reply.status < 400 else f"http_{reply.status}")
    return reply
