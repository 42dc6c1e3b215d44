"""The one definition of the master's IPC protocol: framing, limits, error codes, commands.

Newline-delimited JSON over a Unix stream socket. A request is
`{"cmd": "<name>", "args": {...}}`; a reply is `{"ok": true, "result": ...}` or
`{"ok": false, "error": {"code", "message", "details"?}}`. Both sides — the master's control
server (mastercontrol.daemon.control) and every client (mastercontrol.ipc.client) — encode and
decode through these functions, so they cannot drift apart. Imports only the standard library
and mastercontrol.errors; never the daemon, the CLI or the API.
"""

from __future__ import annotations

import json
import signal
from enum import IntEnum, StrEnum
from typing import Any

from mastercontrol.errors import IPCError

MAX_REQUEST_BYTES = 4 * 1024 * 1024  # one request line (config uploads are the largest)
MAX_REPLY_BYTES = 64 * 1024 * 1024  # one reply line, as far as a client will read
# Deeper JSON is refused before anything walks it: no request or reply needs more than a
# handful of levels, and a recursive consumer of a 100 000-deep list would hit Python's
# recursion limit (json.loads itself raises RecursionError past ~1000).
MAX_JSON_DEPTH = 32


class ErrorCode(StrEnum):
    """Stable error codes of IPC replies (clients and the HTTP APIs switch on them)."""

    BAD_JSON = "bad_json"  # the request line is not JSON
    BAD_REQUEST = "bad_request"  # not an object, no cmd, a wrong argument, nested too deeply
    UNKNOWN_COMMAND = "unknown_command"
    TOO_LARGE = "too_large"  # the request line exceeds MAX_REQUEST_BYTES
    BUSY = "busy"  # too many connections
    UNKNOWN_WORKLOAD = "unknown_workload"
    NOT_RUNNING = "not_running"  # `signal` to a workload with no process
    DISABLED = "disabled"  # the workload has enabled: false
    SHUTTING_DOWN = "shutting_down"
    INVALID_CONFIG = "invalid_config"  # details: {"problems": [...]}
    NO_PREVIOUS_CONFIG = "no_previous_config"  # rollback_config with nothing saved
    HELD = "held"  # a counted workload waits for `reset` after the state database was lost
    # the peer (SO_PEERCRED) may not run this command, or the master may not write what was asked
    PERMISSION_DENIED = "permission_denied"
    INTERNAL = "internal"  # a bug in a handler; logged with its traceback
    BAD_REPLY = "bad_reply"  # client side only: the reply could not be decoded


class Access(IntEnum):
    """What a peer of the socket may do; a command needs at least its level (COMMAND_ACCESS)."""

    NONE = 0  # nothing: every request is permission_denied
    READ = 1  # the read-only commands (`daemon.read_group`)
    FULL = 2  # every command: root, the daemon's own uid, `daemon.socket_group`


# Every command the master serves, with the access it needs: read-only commands change
# nothing and reveal only what `list`, `status` and `logs` show. daemon/commands.py dispatches
# exactly these; the MasterClient façade has one method per command
# (tests/unit/test_ipc_commands.py). A new command must be classified here to exist at all.
COMMAND_ACCESS: dict[str, Access] = {
    "ping": Access.READ,
    "list": Access.READ,
    "status": Access.READ,
    "start": Access.FULL,
    "stop": Access.FULL,
    "restart": Access.FULL,
    "reload": Access.FULL,  # even a dry run reads the config dir, which may hold tokens
    "down": Access.FULL,
    "logs": Access.READ,
    "put_config": Access.FULL,
    "rollback_config": Access.FULL,
    "signal": Access.FULL,
    "reset": Access.FULL,
}
COMMANDS: tuple[str, ...] = tuple(COMMAND_ACCESS)


def parse_signal(value: object) -> signal.Signals:
    """A signal by name or number: "HUP", "sighup", "SIGHUP", "1" or 1; ValueError otherwise.

    Both ends use it: the CLI to refuse a bad one before asking, the master to check the
    request. Signal 0 (no signal, only a check) is refused: it would report success without
    doing anything."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"a signal is a name or a number, got {value!r:.40}")
    text = str(value).strip()
    try:
        if text.isdigit():
            return signal.Signals(int(text))
        name = text.upper()
        return signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
    except (KeyError, ValueError):
        raise ValueError(f"unknown signal {text!r:.40} (a name like HUP or a number)") from None


def json_depth(value: Any, stop_above: int | None = None) -> int:
    """Nesting depth of decoded JSON (a scalar is 0, `{}` is 1), walked without recursion; the
    walk stops early once it is past `stop_above`. The HTTP APIs use it for bodies too."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        if stop_above is not None and deepest > stop_above:
            return deepest
        stack.extend((child, level) for child in children)
    return deepest


def _loads(line: bytes, code: ErrorCode, what: str) -> Any:
    """Parse one JSON line; IPCError(code) if it is not JSON or nests too deeply."""
    try:
        value = json.loads(line)
    except RecursionError:
        value = None
        deep = True
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IPCError(code, f"{what} is not valid JSON: {exc}") from None
    else:
        deep = json_depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH
    if deep:
        bad = ErrorCode.BAD_REQUEST if code is ErrorCode.BAD_JSON else code
        raise IPCError(bad, f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
    return value


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), default=str).encode() + b"\n"


def encode_request(cmd: str, args: dict[str, Any] | None = None) -> bytes:
    """One request line (with its newline)."""
    return _dumps({"cmd": cmd, "args": args or {}})


def decode_request(line: bytes) -> tuple[str, dict[str, Any]]:
    """(cmd, args) of one request line; IPCError bad_json/bad_request for anything malformed."""
    req = _loads(line, ErrorCode.BAD_JSON, "request")
    if not isinstance(req, dict):
        raise IPCError(ErrorCode.BAD_REQUEST, "request must be a JSON object")
    cmd = req.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        raise IPCError(ErrorCode.BAD_REQUEST, "request needs a string field 'cmd'")
    args = req.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise IPCError(ErrorCode.BAD_REQUEST, "'args' must be a JSON object")
    return cmd, args


def encode_reply(result: Any = None, error: IPCError | None = None) -> bytes:
    """One reply line: the result, or the error with its code, message and details."""
    if error is not None:
        err: dict[str, Any] = {"code": str(error.code), "message": str(error)}
        if error.details is not None:
            err["details"] = error.details
        return _dumps({"ok": False, "error": err})
    return _dumps({"ok": True, "result": result})


def decode_reply(line: bytes) -> Any:
    """The result of one reply line; raises the master's IPCError, or IPCError bad_reply."""
    body = _loads(line, ErrorCode.BAD_REPLY, "reply")
    if not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
        raise IPCError(ErrorCode.BAD_REPLY, "reply is not an IPC reply object")
    if body["ok"]:
        return body.get("result")
    err = body.get("error")
    if not isinstance(err, dict) or not isinstance(err.get("code"), str):
        raise IPCError(ErrorCode.BAD_REPLY, "error reply without an error code")
    code: str = err["code"]
    try:
        code = ErrorCode(code)  # a newer master may send a code this client does not know
    except ValueError:
        pass
    raise IPCError(code, str(err.get("message", "")), err.get("details"))
