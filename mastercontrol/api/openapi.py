"""The hand-written OpenAPI documents the APIs serve: found in the source tree or in share/ of
an installed package (setup.cfg installs docs/openapi/*.yaml there). Imports bottle only for
the response type."""

from __future__ import annotations

import sys
from pathlib import Path

import bottle

from mastercontrol.api.errors import APIError


def candidates(name: str) -> list[Path]:
    """Where `<name>.yaml` may be: the source tree, then share/ of the installation."""
    here = Path(__file__).resolve().parents[2]
    return [
        here / "docs" / "openapi" / f"{name}.yaml",
        Path(sys.prefix) / "share" / "mastercontrol" / "openapi" / f"{name}.yaml",
    ]


def document(name: str, override: Path | None = None) -> bytes:
    """The bytes of the first readable document (as the response body); 404 when none is."""
    for path in [override] if override else candidates(name):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        bottle.response.content_type = "application/yaml"
        return data
    raise APIError(404, "not_found", "the OpenAPI document is not installed")
