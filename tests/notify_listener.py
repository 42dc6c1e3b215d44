"""A stand-in for systemd's notification socket, for tests that check sd_notify traffic.

`NotifyListener` binds an AF_UNIX datagram socket (a path, or an abstract `@name`), hands out
the NOTIFY_SOCKET value to give the process under test, and collects datagrams with a deadline.
Used by the unit tests of `mastercontrol.daemon.systemd` and by the real-daemon integration
tests. Imports only the standard library.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

# sun_path is 108 bytes including the terminating NUL on Linux.
MAX_PATH_BYTES = 107


def parse_message(message: str) -> dict[str, str]:
    """`READY=1\\nSTATUS=x` -> {"READY": "1", "STATUS": "x"}."""
    fields: dict[str, str] = {}
    for line in message.split("\n"):
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value
    return fields


class NotifyListener:
    """Receives sd_notify datagrams, like systemd's side of NOTIFY_SOCKET.

    `address` is a socket path, an abstract name starting with "@", or None for a fresh path in
    a short private temporary directory (pytest's tmp_path can exceed the 107-byte limit).
    """

    def __init__(self, address: str | os.PathLike[str] | None = None) -> None:
        self._tmpdir: str | None = None
        if address is None:
            self._tmpdir = tempfile.mkdtemp(prefix="mcn-")
            address = os.path.join(self._tmpdir, "notify.sock")
        self.address = os.fspath(address)
        if self.address.startswith("@"):
            self._bind_to: bytes = b"\0" + self.address[1:].encode()
        else:
            self._bind_to = os.fsencode(self.address)
            if len(self._bind_to) > MAX_PATH_BYTES:
                raise ValueError(f"socket path longer than {MAX_PATH_BYTES} bytes: {self.address}")
        self.messages: list[str] = []  # every datagram received so far, oldest first
        self._sock: socket.socket | None = None

    @classmethod
    def abstract(cls) -> NotifyListener:
        """A listener on a unique abstract-namespace name (no file on disk)."""
        return cls(f"@mastercontrol-test-{os.getpid()}-{uuid.uuid4().hex[:12]}")

    def environ(self) -> dict[str, str]:
        """The variables to put in the environment of the process under test."""
        return {"NOTIFY_SOCKET": self.address}

    def __enter__(self) -> NotifyListener:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(self._bind_to)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self._sock = sock
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if not self.address.startswith("@"):
            Path(self.address).unlink(missing_ok=True)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def collect(self, timeout: float = 0.0) -> list[str]:
        """Wait up to `timeout` seconds for the first datagram, then drain what is queued.

        Returns the datagrams received by this call (also appended to `messages`).
        """
        if self._sock is None:
            raise RuntimeError("NotifyListener is not open (use it as a context manager)")
        new: list[str] = []
        readable, _, _ = select.select([self._sock], [], [], max(timeout, 0.0))
        while readable:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                break
            new.append(data.decode("utf-8", "replace"))
        self.messages.extend(new)
        return new

    def wait_for(self, assignment: str, timeout: float = 15.0) -> dict[str, str]:
        """Wait for a datagram with the line `assignment` (e.g. "READY=1"); return its fields.

        Datagrams already in `messages` count, so the order of sending and waiting is free.
        Raises AssertionError listing everything received if the deadline passes.
        """
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for message in self.messages[seen:]:
                if assignment in message.split("\n"):
                    return parse_message(message)
            seen = len(self.messages)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no {assignment!r} on {self.address} within {timeout} s; "
                    f"received {self.messages!r}"
                )
            self.collect(remaining)
