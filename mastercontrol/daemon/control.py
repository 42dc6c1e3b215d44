"""The master's IPC channel: newline-delimited JSON over a Unix stream socket.

Owns the listening socket, its connections and their buffers — nothing else. Every socket is
non-blocking and every buffer is capped, so a client that stalls, sends garbage or never reads
its replies cannot block the loop or grow the master's memory. Each request line is decoded here
and handed to one `dispatch(cmd, args) -> result` callable (the master's narrow interface); the
reply is `{"ok": true, "result": ...}` or `{"ok": false, "error": {"code", "message"}}`.
The wire format (framing, limits, error codes) is mastercontrol.ipc.protocol's, shared with
every client. An event source of the loop (`mastercontrol.daemon.events`): the listener and
each connection are registrations, `on_ready` accepts, reads and writes; replies wait for
`send_replies()`, which the loop calls after the wake's commit. Every accepted connection's peer
is identified once (SO_PEERCRED, `mastercontrol.daemon.peers`) and each request is checked
against the access its command needs (`COMMAND_ACCESS`) before it is dispatched: a refused one
is answered `permission_denied` and logged (at most one line a minute). Imports only the
standard library, mastercontrol.ipc and the daemon's `events` and `peers`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mastercontrol.daemon.events import READ, WRITE, Registration, Unwatch, no_unwatch
from mastercontrol.daemon.peers import AccessPolicy, Peer, peer_of
from mastercontrol.errors import IPCError
from mastercontrol.ipc.protocol import (
    COMMAND_ACCESS,
    MAX_REQUEST_BYTES,
    Access,
    ErrorCode,
    decode_request,
    encode_reply,
)

log = logging.getLogger("mastercontrol.control")

MAX_REPLY_BACKLOG = 16 * 1024 * 1024  # unread replies before a client is dropped
MAX_CONNECTIONS = 64
IDLE_TIMEOUT = 60.0  # seconds a connection may sit with a half-sent request or unread reply
REFUSAL_LOG_INTERVAL = 60.0  # at most one log line this often about refused peers

Dispatch = Callable[[str, dict[str, Any]], Any]


@dataclass
class Connection:
    sock: socket.socket
    last_active: float
    peer: Peer | None = None
    access: Access = Access.NONE
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)
    closing: bool = False  # close once outbuf is sent

    @property
    def fd(self) -> int:
        return self.sock.fileno()  # -1 once closed: then no longer the owner of any fd


class ControlServer:
    """Listening socket plus connections; an event source of the loop."""

    def __init__(
        self,
        path: Path,
        dispatch: Dispatch,
        group: str | None = None,
        read_group: str | None = None,
        unwatch: Unwatch = no_unwatch,
    ) -> None:
        """`group` is daemon.socket_group, `read_group` daemon.read_group; KeyError when one
        names no group. `unwatch` is called before a connection is closed (daemon/events.py)."""
        self.path = path
        self.dispatch = dispatch
        self.unwatch = unwatch
        self.policy = AccessPolicy.from_names(group, read_group)
        self.conns: dict[int, Connection] = {}
        self.refused = 0  # requests refused for the peer's credentials
        self._refusals_unlogged = 0
        self._refusal_logged_at = float("-inf")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_socket() or path.exists():
            # Only a dead daemon's socket can be here: the caller holds the daemon lock.
            path.unlink()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.setblocking(False)
        old_umask = os.umask(0o177)
        try:
            self.listener.bind(os.fspath(path))
        finally:
            os.umask(old_umask)
        # The mode lets in who may connect; the peer check decides what each may do. With a
        # read_group every local user may connect (a refused one gets permission_denied).
        if self.policy.full is not None:
            os.chown(path, -1, self.policy.full.gid)
        os.chmod(path, socket_mode(self.policy))
        self.listener.listen(32)

    def registrations(self) -> dict[int, Registration]:
        """The listener; each connection that may still send (read) or has replies (write)."""
        regs = {self.listener.fileno(): Registration(self.listener, READ)}
        for fd, conn in self.conns.items():
            if not conn.closing or conn.outbuf:
                regs[fd] = Registration(conn, READ | (WRITE if conn.outbuf else 0))
        return regs

    def on_ready(self, owner: object, events: int, now: float) -> None:
        if owner is self.listener:
            self.accept(now)
            return
        if not isinstance(owner, Connection) or self.conns.get(owner.fd) is not owner:
            return  # closed earlier in this wake
        fd = owner.fd
        if events & READ:
            self.on_readable(fd, now)
        if events & WRITE:
            self.on_writable(fd)

    def own_fds(self) -> list[int]:
        """Every fd this server holds (children close them)."""
        return [self.listener.fileno(), *self.conns]

    def accept(self, now: float) -> None:
        for _ in range(16):  # bounded: a connect storm cannot starve the loop
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: log and try on the next wake
                log.warning("cannot accept IPC connection: %s", exc)
                return
            sock.setblocking(False)
            peer = peer_of(sock)
            conn = Connection(sock, now, peer, self.policy.access(peer))
            if len(self.conns) >= MAX_CONNECTIONS and not self._evict_idle():
                err = IPCError(ErrorCode.BUSY, f"too many connections (max {MAX_CONNECTIONS})")
                conn.outbuf += encode_reply(error=err)
                conn.closing = True
            self.conns[sock.fileno()] = conn

    def _evict_idle(self) -> bool:
        """Make room for a newcomer by dropping the client silent the longest with nothing in
        flight (no half-sent request, no unread reply): silent clients cannot lock the operator
        out. False if every connection is mid-request or mid-reply; then the newcomer waits."""
        idle = [
            (c.last_active, fd)
            for fd, c in self.conns.items()
            if not c.inbuf and not c.outbuf and not c.closing
        ]
        if not idle:
            return False
        self._close(min(idle)[1])
        return True

    def on_readable(self, fd: int, now: float) -> None:
        conn = self.conns.get(fd)
        if conn is None:
            return
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(fd)
            return
        if not data:
            self._close(fd)
            return
        conn.last_active = now
        conn.inbuf += data
        self._handle_lines(conn, now)
        if len(conn.inbuf) > MAX_REQUEST_BYTES:
            self._refuse_too_large(conn)
        # Replies are not sent here: the loop calls send_replies() once the wake's state
        # changes are committed, so an acknowledged command is never lost to a crash.

    def send_replies(self) -> None:
        """Write what each connection has pending (called after the wake's commit)."""
        for fd in [fd for fd, c in self.conns.items() if c.outbuf or c.closing]:
            self._flush(fd)

    def _handle_lines(self, conn: Connection, now: float) -> None:
        while not conn.closing:
            end = conn.inbuf.find(b"\n")
            if end < 0:
                return
            if end > MAX_REQUEST_BYTES:  # completed in the chunk that crossed the cap
                self._refuse_too_large(conn)
                return
            line = bytes(conn.inbuf[:end])
            del conn.inbuf[: end + 1]
            if not line.strip():
                continue
            conn.outbuf += self._answer(conn, line, now)

    def _refuse_too_large(self, conn: Connection) -> None:
        err = IPCError(ErrorCode.TOO_LARGE, f"request exceeds {MAX_REQUEST_BYTES} bytes")
        conn.inbuf.clear()
        conn.outbuf += encode_reply(error=err)
        conn.closing = True

    def _answer(self, conn: Connection, line: bytes, now: float) -> bytes:
        try:
            cmd, args = decode_request(line)
            self._authorize(conn, cmd, now)
            return encode_reply(self.dispatch(cmd, args))
        except IPCError as exc:
            return encode_reply(error=exc)
        except Exception as exc:  # a bug in a handler must not take the master down
            log.exception("IPC command failed")
            return encode_reply(error=IPCError(ErrorCode.INTERNAL, f"internal error: {exc}"))

    def _authorize(self, conn: Connection, cmd: str, now: float) -> None:
        """IPCError permission_denied unless the peer may run `cmd` (an unknown one needs only
        some access: it is then unknown_command)."""
        if conn.access >= COMMAND_ACCESS.get(cmd, Access.READ):
            return
        who = conn.peer.describe() if conn.peer else "a peer without credentials"
        if conn.access is Access.READ:
            what = f"{who} has read-only access (daemon.read_group) and may not run {cmd!r}"
        else:
            what = f"{who} may not use this daemon"
        message = f"permission denied: {what}; every command: {self.policy.allowed()}"
        self.refused += 1
        self._refusals_unlogged += 1
        if now - self._refusal_logged_at >= REFUSAL_LOG_INTERVAL:
            more = self._refusals_unlogged - 1
            log.warning("IPC %s%s", message, f" ({more} more refused since)" if more else "")
            self._refusals_unlogged = 0
            self._refusal_logged_at = now
        raise IPCError(ErrorCode.PERMISSION_DENIED, message)

    def on_writable(self, fd: int) -> None:
        self._flush(fd)

    def _flush(self, fd: int) -> None:
        conn = self.conns.get(fd)
        if conn is None:
            return
        if conn.outbuf:
            try:
                sent = conn.sock.send(conn.outbuf)
                del conn.outbuf[:sent]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._close(fd)
                return
        if len(conn.outbuf) > MAX_REPLY_BACKLOG:
            log.warning("dropping IPC client that does not read its replies")
            self._close(fd)
        elif conn.closing and not conn.outbuf:
            self._close(fd)

    def expire(self, now: float) -> None:
        """Drop connections idle for too long with a half-sent request or unread replies."""
        for fd, conn in list(self.conns.items()):
            if (conn.inbuf or conn.outbuf) and now - conn.last_active >= IDLE_TIMEOUT:
                self._close(fd)

    def next_expiry(self) -> float | None:
        """When the first connection with something in flight reaches IDLE_TIMEOUT (the loop
        keeps a timer at that deadline, so eviction is on time, not at the next housekeeping
        pass); None when no connection has anything in flight."""
        deadlines = [
            c.last_active + IDLE_TIMEOUT for c in self.conns.values() if c.inbuf or c.outbuf
        ]
        return min(deadlines, default=None)

    def _close(self, fd: int) -> None:
        conn = self.conns.pop(fd, None)
        if conn is not None:
            self.unwatch(fd)
            with contextlib.suppress(OSError):
                conn.sock.close()

    def close(self) -> None:
        for fd in list(self.conns):
            self._close(fd)
        self.listener.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


def socket_mode(policy: AccessPolicy) -> int:
    """0600; 0660 with a socket_group; 0666 with a read_group (the peer check gates it)."""
    if policy.read is not None:
        return 0o666
    return 0o660 if policy.full is not None else 0o600
