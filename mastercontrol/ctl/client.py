"""JSON-lines client of the master's Unix socket, used by mastercontrol-ctl and the API children.

One request, one reply line. Connection problems raise `DaemonUnreachable`; an error reply
raises IPCError with the master's stable code. Imports only the standard library.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from mastercontrol.errors import IPCError, MasterControlError

MAX_REPLY_BYTES = 64 * 1024 * 1024


class DaemonUnreachable(MasterControlError):
    """No daemon answers on the socket."""


class ControlClient:
    def __init__(self, socket_path: Path, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def call(self, cmd: str, **args: Any) -> Any:
        """Send one command and return its result."""
        request = json.dumps({"cmd": cmd, "args": args}).encode() + b"\n"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            try:
                sock.connect(os.fspath(self.socket_path))
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise DaemonUnreachable(
                    f"mastercontrold is not running (no daemon on {self.socket_path}: "
                    f"{exc.strerror})"
                ) from None
            except PermissionError:
                raise DaemonUnreachable(
                    f"permission denied on {self.socket_path} (run as the daemon's user or root)"
                ) from None
            except OSError as exc:
                raise DaemonUnreachable(f"cannot reach {self.socket_path}: {exc}") from None
            try:
                sock.sendall(request)
                reply = self._read_line(sock)
            except TimeoutError:
                raise DaemonUnreachable(
                    f"mastercontrold on {self.socket_path} did not answer in {self.timeout:g}s"
                ) from None
            except OSError as exc:
                raise DaemonUnreachable(f"connection to the daemon failed: {exc}") from None
        finally:
            sock.close()
        try:
            body = json.loads(reply)
        except json.JSONDecodeError as exc:
            raise IPCError("bad_reply", f"daemon sent an invalid reply: {exc}") from None
        if not body.get("ok"):
            err = body.get("error") or {}
            raise IPCError(
                str(err.get("code", "error")), str(err.get("message", "")), err.get("details")
            )
        return body.get("result")

    @staticmethod
    def _read_line(sock: socket.socket) -> bytes:
        buf = bytearray()
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                if not buf:
                    raise ConnectionResetError("daemon closed the connection")
                return bytes(buf)
            buf += chunk
            end = buf.find(b"\n")
            if end >= 0:
                return bytes(buf[:end])
            if len(buf) > MAX_REPLY_BYTES:
                raise IPCError("bad_reply", "reply too large")
