"""Requests an intake worker does not answer itself, forwarded to the central process as HTTP.

Owns both halves of one rule. The worker's half (`Forward`, a WSGI app): method, path, query,
headers and body go to the central's private unix socket; status, headers and body come back
as they are. The TCP peer's address (api/peer.py: what the worker's Waitress got from accept)
and the URL scheme (Waitress believes X-Forwarded-Proto only from 127.0.0.1) travel in PEER and
SCHEME, with SECRET, a random per-start secret the central gave its workers. The central's half
(`with_intake_peer`): a request on that socket is believed only with that secret (a
constant-time compare); then REMOTE_ADDR and wsgi.url_scheme are set from the headers, so the
login throttle, the audit actors and the Secure cookie see exactly what they see without
workers. Without the secret the request is refused (403). A worker drops any header of these
names a caller sent before adding its own, so a caller cannot choose its address. The unix
socket lives in a 0700 directory; its path is reached through /proc/self/fd of that directory
(no sun_path length limit, no symlink followed). Imports the standard library and api/errors;
never bottle, daemon/ or child/.
"""

from __future__ import annotations

import hmac
import http.client
import os
import socket
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

from mastercontrol.api.errors import error_json

SECRET = "X-MC-Intake-Secret"
PEER = "X-MC-Intake-Peer"
SCHEME = "X-MC-Intake-Scheme"
_ENVIRON_KEYS = tuple("HTTP_" + h.upper().replace("-", "_") for h in (SECRET, PEER, SCHEME))
# Hop-by-hop headers (RFC 9110 7.6.1) are the connection's, not the request's.
_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                  "proxy-connection", "content-length"})  # fmt: skip
_ENV_HEADERS = {"CONTENT_TYPE": "Content-Type"}  # Content-Length: set from the body read
FORWARD_MARGIN = 30.0  # seconds past client_timeout_seconds a forwarded call may take

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def open_dir(path: str) -> int:
    """An fd of the directory `path`, refusing a symlink (O_NOFOLLOW)."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def socket_path(dir_fd: int, name: str) -> str:
    return f"/proc/self/fd/{dir_fd}/{name}"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _reply(start_response: Callable[..., Any], status: str, body: bytes) -> list[bytes]:
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _target(environ: dict[str, Any]) -> str:
    """The request target as the caller sent it (path and query)."""
    raw = str(environ.get("REQUEST_URI") or "")
    if raw.startswith("/"):
        return raw
    path = quote(str(environ.get("PATH_INFO") or "/").encode("latin-1"), safe="/;=,:@!$&'()*+~")
    query = str(environ.get("QUERY_STRING") or "")
    return f"{path}?{query}" if query else path


class Forward:
    """The worker's WSGI app for everything it does not answer: sent on to the central."""

    def __init__(self, dir_fd: int, name: str, secret: str, timeout: float) -> None:
        self.path = socket_path(dir_fd, name)
        self.secret = secret
        self.timeout = timeout

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        headers: list[tuple[str, str]] = []
        for key, value in environ.items():
            if key in _ENV_HEADERS:
                if value:
                    headers.append((_ENV_HEADERS[key], str(value)))
            elif key.startswith("HTTP_") and key not in _ENVIRON_KEYS:
                name = key[5:].replace("_", "-").title()
                if name.lower() not in _HOP:
                    headers.append((name, str(value)))
        headers += [
            (SECRET, self.secret),
            (PEER, str(environ.get("REMOTE_ADDR") or "unknown")),
            (SCHEME, str(environ.get("wsgi.url_scheme") or "http")),
        ]
        body = environ["wsgi.input"].read() if "wsgi.input" in environ else b""
        conn = _UnixConnection(self.path, self.timeout)
        try:
            conn.putrequest(
                str(environ.get("REQUEST_METHOD") or "GET"), _target(environ),
                skip_host=True, skip_accept_encoding=True,
            )  # fmt: skip
            for name, value in headers:
                conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
            status = f"{resp.status} {resp.reason}"
            back = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP]
        except (OSError, http.client.HTTPException) as exc:
            message = f"the central process did not answer: {exc}"
            body = error_json("central_down", message).encode()
            return _reply(start_response, "502 Bad Gateway", body)
        finally:
            conn.close()
        start_response(status, [*back, ("Content-Length", str(len(data)))])
        return [data]


def with_intake_peer(app: WSGIApp, secret: str) -> WSGIApp:
    """The central's side: `app` believes a worker's PEER and SCHEME only with `secret`."""
    expected = secret.encode()

    def believed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        offered, peer, scheme = (environ.pop(k, None) for k in _ENVIRON_KEYS)
        if not isinstance(offered, str) or not hmac.compare_digest(
            offered.encode("utf-8", "surrogateescape"), expected
        ):
            body = error_json("forbidden", "this socket is for the central's intake workers")
            return _reply(start_response, "403 Forbidden", body.encode())
        environ["REMOTE_ADDR"] = environ["REMOTE_HOST"] = str(peer or "unknown")
        if scheme in ("http", "https"):
            environ["wsgi.url_scheme"] = scheme
        return app(environ, start_response)

    return believed
