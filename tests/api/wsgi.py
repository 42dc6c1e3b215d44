"""Calling a WSGI app in process, through wsgiref.validate, as bottle's own tests do."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names; the last of a repeated header
    body: bytes
    header_list: tuple[tuple[str, str], ...] = ()  # every header, repeated ones too

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error_code(self) -> str:
        data = self.json()
        assert set(data) == {"error"}, data
        code: str = data["error"]["code"]
        assert isinstance(data["error"]["message"], str)
        return code


def call(
    app: Any,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
    token: str | None = None,
    environ_extra: dict[str, str] | None = None,
    validate: bool = True,
) -> Reply:
    if json_body is not None:
        body = json.dumps(json_body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    path, _, query = path.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path.encode().decode("latin-1"),  # as a server hands UTF-8 over
        "QUERY_STRING": query,
        "wsgi.input": io.BytesIO(body or b""),
        "CONTENT_LENGTH": str(len(body or b"")),
        "SCRIPT_NAME": "",
    }
    setup_testing_defaults(environ)
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        else:
            environ[f"HTTP_{key}"] = value
    if token is not None:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    environ.update(environ_extra or {})
    captured: dict[str, Any] = {}

    def start_response(status: str, hdrs: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"] = int(status.split()[0])
        captured["headers"] = {k.lower(): v for k, v in hdrs}
        captured["list"] = tuple(hdrs)
        return lambda data: None

    result = (validator(app) if validate else app)(environ, start_response)
    try:
        data = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return Reply(captured["status"], captured["headers"], data, captured["list"])
