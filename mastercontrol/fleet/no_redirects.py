"""HTTP calls that carry a bearer token and never follow a redirect.

urllib's redirect handler copies every header but the body's onto the new request, so a
redirect would resend the Authorization header to wherever it points. The heartbeat sender and
the deployer (its calls to client APIs and to the central) open their requests through
`opener()`, which turns any redirect into an HTTPError instead. Imports only the standard
library.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would resend the Authorization header elsewhere: treat it as a failure."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_NoRedirects())


def call_json(
    url: str, token: str | None, method: str = "GET", body: Any = None, *,
    timeout: float, max_bytes: int,
) -> Any:  # fmt: skip
    """One JSON request (Bearer `token` when given); the decoded reply. Raises OSError (HTTP
    errors, a redirect included, are urllib.error.HTTPError) or ValueError (not JSON)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with opener().open(req, timeout=timeout) as resp:
        return json.loads(resp.read(max_bytes) or b"null")
