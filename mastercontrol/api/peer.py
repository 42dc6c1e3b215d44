"""Who is calling: the TCP peer's address, for audit actors and the login throttle alike.

Owns the one rule: the address is WSGI's `REMOTE_ADDR` (what Waitress got from accept()), never
`X-Forwarded-For` or `Forwarded`, which any client can write (bottle's `request.remote_addr`
trusts them, so a caller could choose who it is in the audit log or dodge the login limit).
There is no trusted-proxy setting: behind a reverse proxy every caller is the proxy's address
(docs/operations.md says so). Imports only the standard library; not bottle, daemon/ or child/.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def peer_addr(environ: Mapping[str, Any]) -> str:
    """The TCP peer's address of this request, or "unknown" when the server gave none."""
    return str(environ.get("REMOTE_ADDR") or "unknown")
