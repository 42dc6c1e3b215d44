"""The deployer's calls to the central API: journal records (`POST|PATCH /api/v1/deployments`),
for `--dry-run` what the central last heard from each client (`GET /api/v1/clients`), and the
health gate's view of a client through its heartbeats (`GET /api/v1/clients/<name>`).

A central that cannot be reached never stops a deploy: each call returns None and the caller
says so. Imports only the standard library, fleet/no_redirects.py (the token never follows a
redirect) and deploy/gate.py; no fabric, no API code (it speaks HTTP to it).
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Any

from mastercontrol.deploy.gate import Probe, Snapshot
from mastercontrol.fleet.no_redirects import call_json

CENTRAL_URL_ENV = "MCTL_CENTRAL_URL"
CENTRAL_TOKEN_ENV = "MCTL_CENTRAL_TOKEN"
_TIMEOUT = 5.0


class Central:
    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.last_error: str | None = None

    @classmethod
    def configured(cls, url: str | None, token: str | None) -> Central | None:
        url = os.environ.get(CENTRAL_URL_ENV) or url
        token = os.environ.get(CENTRAL_TOKEN_ENV) or token
        return cls(url, token) if url else None

    def call(self, method: str, path: str, body: Any = None) -> Any | None:
        try:
            return call_json(
                self.url + path, self.token, method, body,
                timeout=_TIMEOUT, max_bytes=8 * 1024 * 1024,
            )  # fmt: skip
        except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
            self.last_error = f"{method} {self.url}{path}: {exc}"
            return None

    def clients(self) -> dict[str, dict[str, Any]] | None:
        """Name -> the central's summary (status, release, last_seen), or None if unreachable."""
        found = self.call("GET", "/api/v1/clients")
        if not isinstance(found, dict) or not isinstance(found.get("clients"), list):
            return None
        return {str(c.get("name")): c for c in found["clients"] if isinstance(c, dict)}

    def create(self, record: dict[str, Any]) -> int | None:
        found = self.call("POST", "/api/v1/deployments", record)
        return int(found["id"]) if isinstance(found, dict) and "id" in found else None

    def update(self, central_id: int, record: dict[str, Any]) -> bool:
        return self.call("PATCH", f"/api/v1/deployments/{central_id}", record) is not None

    def health_probe(self, name: str, since_wall: float) -> Probe:
        """The gate's probe of client `name` through the central (`GET /api/v1/clients/<name>`):
        its release and workload states as its last heartbeat told them, which count only when
        that heartbeat arrived after `since_wall` (the control host's wall clock at the switch:
        the central is expected to run there, or with a synchronised clock)."""
        path = f"/api/v1/clients/{urllib.parse.quote(name, safe='')}"

        def probe() -> Snapshot:
            found = self.call("GET", path)
            if not isinstance(found, dict):
                return Snapshot(error=f"central: {self.last_error or 'no answer'}")
            last_seen = found.get("last_seen")
            if not isinstance(last_seen, (int, float)) or last_seen < since_wall:
                return Snapshot(error="central: no heartbeat from it since the switch yet")
            items = found.get("workloads")
            listed = items if isinstance(items, list) else []
            workloads = tuple(w for w in listed if isinstance(w, dict))
            release = found.get("release")
            return Snapshot(release=release if isinstance(release, str) else None,
                            workloads=workloads)  # fmt: skip

        return probe
