"""The private link between the central process and one of its intake workers: a socketpair.

Owns the wire between the two ends (api/intake_owner.py in the central process,
api/central_intake.py in the worker): an AF_UNIX SOCK_SEQPACKET socketpair, so every message
is one send and one receive, never split or merged, with no framing of our own. A message is a
pickled tuple whose first item says what it is:

- central -> worker: `("hello", Hello)` once, first; then `("flush", seconds)`, how long the
  central's flush now running has taken (the worker's shedder sheds on it as the central
  would).
- worker -> central: `("heartbeat", Heartbeat)` for every heartbeat the worker accepted;
  `("shed", total)`, how many heartbeats it has shed so far, about once a second.

Pickle is acceptable here and only here: both ends of a socketpair are processes the central
itself started from its own code (a fork+exec'd child holds the other end, nobody else can
reach it), so nothing unpickled was written by anyone but this code. A message is at most
MAX_MESSAGE bytes, under the kernel's default socket send buffer (a datagram must fit in it
whole): a heartbeat whose pickle is larger is not sent here (the worker forwards that request
to the central over HTTP instead). A full buffer blocks the sender, which is the backpressure:
a worker whose central stops reading waits at most LINK_TIMEOUT per heartbeat, then answers it
503 + Retry-After (api/central_intake.py), and while its threads wait its queue grows and its
shedder sheds the rest. Imports only the standard library and fleet/intake.py's types; never bottle,
daemon/ or child/.
"""

from __future__ import annotations

import pickle
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mastercontrol.config.model import CentralSettings

MAX_MESSAGE = 128 * 1024  # under net.core.wmem_default (212992): a datagram must fit whole
LINK_TIMEOUT = 2.0  # seconds a worker's heartbeat may wait for room on a full link
LINK_BUFFER = 4 * 1024 * 1024  # asked for; the kernel caps it (net.core.wmem_max x 2)


@dataclass(frozen=True)
class Hello:
    """What a worker needs from the central, sent over the link (never on a command line)."""

    index: int
    secret: str  # the header secret that makes the central believe the worker's peer address
    settings: CentralSettings
    operator_token: str | None
    inventory: str  # inventory.yaml, as the central resolved it
    socket_dir: str  # the central's private 0700 directory
    socket_name: str  # its unix socket in that directory, for what the worker forwards


@dataclass(frozen=True)
class WorkerCounts:
    """One worker slot as the central's /metrics shows it."""

    worker: int
    alive: bool
    heartbeats: int  # handed over to the central by this slot's processes
    shed: int
    restarts: int


def pair() -> tuple[socket.socket, socket.socket]:
    """(the central's end, the worker's end). The worker's send buffer is as large as the
    kernel allows: it is what absorbs a central busy for a moment (a long flush)."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, LINK_BUFFER)
    return mine, theirs


def encode(message: tuple[Any, ...]) -> bytes | None:
    """The message's bytes, or None when it is too large for the link."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return data if len(data) <= MAX_MESSAGE else None


def send(sock: socket.socket, data: bytes, *, block: bool = True) -> bool:
    """Send one message; False when `block` is off and the link is full (nothing sent then:
    a datagram goes whole or not at all). OSError when the other end is gone."""
    if block:
        sock.send(data)  # a socket with a timeout raises TimeoutError past it
        return True
    try:
        sock.send(data, socket.MSG_DONTWAIT)
    except (BlockingIOError, TimeoutError):  # (a socket with a timeout polls for room first)
        return False
    return True


def messages(sock: socket.socket) -> Iterator[tuple[Any, ...]]:
    """Every message from the other end until it closes (or the link breaks). A socket with a
    timeout (the worker's end) just waits again when nothing came in time."""
    buffer = bytearray(MAX_MESSAGE)
    view = memoryview(buffer)
    while True:
        try:
            size = sock.recv_into(buffer)
        except TimeoutError:
            continue
        except OSError:
            return
        if size == 0:
            return
        message = pickle.loads(view[:size])
        if isinstance(message, tuple) and message:
            yield message
