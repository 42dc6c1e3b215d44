"""MasterClient: the one client of the master's IPC socket, for the CLI and the internal services.

A façade with one method per IPC command (`workloads()` is `list`), each a single request and
reply line over a fresh connection. Connection problems raise `DaemonUnreachable`; an error
reply raises IPCError with the master's code (`bad_reply` when the reply cannot be decoded).
Imports only the standard library, mastercontrol.errors and mastercontrol.ipc.protocol; never
the daemon, so it is safe to import in any child after the fork.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from mastercontrol.errors import IPCError, MasterControlError
from mastercontrol.ipc.protocol import (
    MAX_REPLY_BYTES,
    MAX_REQUEST_BYTES,
    ErrorCode,
    decode_reply,
    encode_request,
)


class DaemonUnreachable(MasterControlError):
    """No daemon answers on the socket (missing, refused, not permitted, or timed out)."""


class MasterClient:
    def __init__(self, socket_path: Path, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    # ------------------------------------------------------------------ raw

    def call(self, cmd: str, **args: Any) -> Any:
        """Send one command and return its result; IPCError carries an error reply's code."""
        request = encode_request(cmd, args)
        if len(request) - 1 > MAX_REQUEST_BYTES:  # the master would refuse it: do not send it
            raise IPCError(ErrorCode.TOO_LARGE, f"request exceeds {MAX_REQUEST_BYTES} bytes")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            self._connect(sock)
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
        return decode_reply(reply)

    def _connect(self, sock: socket.socket) -> None:
        try:
            sock.connect(os.fspath(self.socket_path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonUnreachable(
                f"mastercontrold is not running (no daemon on {self.socket_path}: {exc.strerror})"
            ) from None
        except PermissionError:
            raise DaemonUnreachable(
                f"permission denied on {self.socket_path} (run as the daemon's user or root)"
            ) from None
        except OSError as exc:
            raise DaemonUnreachable(f"cannot reach {self.socket_path}: {exc}") from None

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
                raise IPCError(ErrorCode.BAD_REPLY, f"reply exceeds {MAX_REPLY_BYTES} bytes")

    def _dict(self, cmd: str, **args: Any) -> dict[str, Any]:
        result = self.call(cmd, **args)
        if not isinstance(result, dict):
            raise IPCError(ErrorCode.BAD_REPLY, f"{cmd}: expected an object, got {result!r:.80}")
        return result

    # ------------------------------------------------------------------ one per command

    def ping(self) -> dict[str, Any]:
        """The daemon: pid, version, uptime, paths, status line, config problems."""
        return self._dict("ping")

    def workloads(self, tag: str | None = None, metrics: bool = False) -> dict[str, Any]:
        """`{"daemon": {...}, "workloads": [view, ...]}`, as `list --json` prints it."""
        args: dict[str, Any] = {"metrics": metrics}
        if tag is not None:
            args["tag"] = tag
        return self._dict("list", **args)

    def status(self, name: str) -> dict[str, Any]:
        """One workload with its recent runs, log path and health (`status --json`)."""
        return self._dict("status", name=name)

    def start(self, name: str) -> dict[str, Any]:
        return self._dict("start", name=name)

    def stop(self, name: str) -> dict[str, Any]:
        return self._dict("stop", name=name)

    def restart(self, name: str) -> dict[str, Any]:
        return self._dict("restart", name=name)

    def signal(self, name: str, signal: str) -> dict[str, Any]:
        """Send `signal` ("HUP", "SIGHUP" or a number as text) to the workload's process group:
        `{"name", "state", "pid", "signal": "SIGHUP"}`; IPCError not_running if it has no
        process. Its state does not change (what the workload does about it may)."""
        return self._dict("signal", name=name, signal=signal)

    def logs(self, name: str, lines: int = 50) -> dict[str, Any]:
        """`{"name", "path", "lines": [...]}`: the last `lines` lines of the workload's log."""
        return self._dict("logs", name=name, lines=lines)

    def reload(self, dry_run: bool = False) -> dict[str, Any]:
        """`{"dry_run", "plan": {"add", "remove", "change", "unchanged"}}`."""
        return self._dict("reload", dry_run=dry_run)

    def down(self) -> dict[str, Any]:
        """Stop every workload, then the daemon: `{"pid", "stopping": true}`."""
        return self._dict("down")

    def put_config(self, files: dict[str, str], replace: bool = False) -> dict[str, Any]:
        """Push workload files {"<name>.yaml": text}, validated with the current ones as a
        whole: IPCError invalid_config (details {"problems": [{file, line, field, message}]})
        and nothing changed, or written, applied by a reload and `{"plan", "written",
        "removed"}` returned. `replace` also removes the workload files not named."""
        return self._dict("put_config", files=files, replace=replace)

    def rollback_config(self) -> dict[str, Any]:
        """Restore the files the last put_config replaced and reload: `{"plan", ...}`."""
        return self._dict("rollback_config")

    def reset(self, name: str | None = None) -> dict[str, Any]:
        """Start `name`'s run count from 0 (releasing it if held after a lost state database):
        `{"name", "state", "pid", "message"}`; without a name, accept the lost state for all:
        `{"degraded": false, "released": [...]}`."""
        if name is None:
            return self._dict("reset", all=True)
        return self._dict("reset", name=name)
