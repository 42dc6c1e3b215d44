"""The client API as it really runs: client_service.main in its own process, Waitress on
127.0.0.1 and a free port, over a real daemon from the harness; and a small HTTP client."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.harness import REPO, Daemon, wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class HTTPReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def write_daemon_yaml(daemon: Daemon, fleet: dict[str, Any]) -> Path:
    """daemon.yaml with a `fleet:` section (JSON is valid YAML)."""
    return daemon.write("daemon.yaml", json.dumps({"fleet": fleet}, indent=2))


class ApiService:
    """client_service.main(**params) in a child process, as the master would call it."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_path = daemon.root / "client-api.stderr"

    def params(self) -> dict[str, str]:
        d = self.daemon
        return {
            "config_dir": str(d.config_dir),
            "socket_path": str(d.socket_path),
            "state_dir": str(d.db_path.parent),
            "log_dir": str(d.log_dir),
            "section_digest": "test",
        }

    def spawn(self) -> subprocess.Popen[bytes]:
        code = textwrap.dedent(
            f"""
            import sys
            from mastercontrol.api.client_service import main
            sys.exit(main(**{self.params()!r}))
            """
        )
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code], cwd=REPO, stdin=subprocess.DEVNULL, stderr=err
            )
        return self.proc

    def start(self, port: int) -> None:
        self.port = port
        proc = self.spawn()

        def answers() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"client API exited {proc.returncode}:\n{self.stderr()}")
            try:
                return self.request("GET", "/api/v1/health").status in (200, 503)
            except OSError:
                return False

        wait_for(answers, what="client API to answer")

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: bytes | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> HTTPReply:
        hdrs = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=body, method=method, headers=hdrs
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return HTTPReply(
                    resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
                )
        except urllib.error.HTTPError as exc:
            with exc:
                return HTTPReply(
                    exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()
                )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
