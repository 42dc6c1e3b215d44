"""Bearer-token check for the HTTP APIs: `Authorization: Bearer <token>`.

Owns the comparison only. The token is kept as its SHA-256 digest and compared with
`hmac.compare_digest` on digests, so neither the length nor the bytes of the secret leak through
timing. Any header that cannot be a valid token (not ASCII, absurdly long, wrong scheme) is simply
"not authorized": a 401, never an exception. Imports only the standard library.
"""

from __future__ import annotations

import hashlib
import hmac

MAX_HEADER_CHARS = 4096  # a longer Authorization header is rejected without hashing it


class TokenCheck:
    """`allows(header)` says whether an Authorization header carries the token.

    With no token configured every request is allowed (the API refuses to listen on anything
    but loopback in that case; see client_service.py)."""

    def __init__(self, token: str | None) -> None:
        if token is not None and not valid_token(token):
            raise ValueError("the API token must be printable ASCII without spaces")
        self._digest = _digest(token) if token else None

    @property
    def required(self) -> bool:
        return self._digest is not None

    def allows(self, header: str | None) -> bool:
        if self._digest is None:
            return True
        if not header or len(header) > MAX_HEADER_CHARS:
            return False
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        try:
            offered = _digest(credentials.strip())
        except UnicodeEncodeError:  # WSGI hands headers over as latin-1 text
            return False
        return hmac.compare_digest(offered, self._digest)

    def __repr__(self) -> str:  # never the digest, not even in a debug log
        return f"TokenCheck(required={self.required})"


def valid_token(token: str) -> bool:
    """What a token may be: it has to fit in an HTTP header as `Bearer <token>`."""
    return bool(token) and token.isascii() and token.isprintable() and " " not in token


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()
