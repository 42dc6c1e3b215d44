"""A cheap heartbeat load generator for bench/central_load.py: raw sockets, one epoll loop.

Owns what one generator process does: send each of its clients' pre-built heartbeat requests
(head and ~2 KB body built once, so the loop costs a connect, a send and a read) on a schedule,
one new connection per heartbeat (a real device does not keep a connection open for 30 s), and
retry a failed one the way the heartbeat sender does (fleet/heartbeat.py: after a failure the
next try is one interval later, ±10 %; a 503's Retry-After is waited out, plus 0 to 50 %
jitter, as RETRY_AFTER_JITTER there says). It measures its own
CPU, so the report can say what the generator costs. Imports only the standard library; it is
a bench script, not part of the package.
"""

from __future__ import annotations

import errno
import heapq
import random
import resource
import selectors
import socket
import time
from dataclasses import dataclass, field
from typing import Any

RETRY_AFTER_JITTER = 0.5  # fleet/heartbeat.py's (not imported: the loop stays stdlib only)
CONNECT_TIMEOUT = 10.0
ANSWER_TIMEOUT = 30.0
MAX_IN_FLIGHT = 4000  # per generator: bounded fds; more than Waitress would ever hold


@dataclass
class Stats:
    ok: int = 0
    errors: int = 0
    retried: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    accepted: set[int] = field(default_factory=set)  # clients answered 200 at least once
    cpu_seconds: float = 0.0

    def fail(self, kind: str) -> None:
        self.errors += 1
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "errors": self.errors, "retried": self.retried,
            "by_kind": self.by_kind, "latencies": self.latencies,
            "accepted": sorted(self.accepted), "cpu_seconds": self.cpu_seconds,
        }  # fmt: skip


class _Conn:
    __slots__ = ("answer", "client", "connected", "out", "sock", "started")

    def __init__(self, client: int, sock: socket.socket, started: float, out: bytes) -> None:
        self.client = client
        self.sock = sock
        self.started = started
        self.out = memoryview(out)
        self.answer = bytearray()
        self.connected = False


def _status_and_retry(answer: bytes) -> tuple[int, float | None]:
    head = bytes(answer[:4096]).split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    try:
        status = int(head[0].split()[1])
    except (IndexError, ValueError):
        return 0, None
    retry = None
    for line in head[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"retry-after":
            try:
                retry = float(value.strip())
            except ValueError:
                retry = None
    return status, retry


def run(
    port: int,
    requests: dict[int, bytes],
    *,
    interval: float,
    seconds: float,
    seed: int,
    storm: bool = False,
    storm_bound: float = 180.0,
) -> Stats:
    """Steady: every client beats every `interval` ±10 %, its first beat somewhere in the
    first interval, for `seconds`. Storm: every client at once, each retried as the sender
    would until accepted, for at most `storm_bound` seconds."""
    rng = random.Random(seed)
    stats = Stats()
    sel = selectors.DefaultSelector()
    start = time.monotonic()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    if storm:
        heap = [(start, i) for i in requests]
        end = start + storm_bound
    else:
        heap = [(start + rng.uniform(0, interval), i) for i in requests]
        end = start + seconds
    heapq.heapify(heap)
    live: dict[int, _Conn] = {}
    pending = len(requests) if storm else -1

    def retry_delay(retry_after: float | None) -> float:
        if retry_after is None:
            return interval * rng.uniform(0.9, 1.1)
        return retry_after * (1.0 + RETRY_AFTER_JITTER * rng.random())

    def again(conn: _Conn, now: float, retry_after: float | None) -> None:
        if storm:
            stats.retried += 1
            heapq.heappush(heap, (now + retry_delay(retry_after), conn.client))

    def finish(conn: _Conn, now: float, kind: str | None, retry_after: float | None) -> None:
        nonlocal pending
        sel.unregister(conn.sock)
        conn.sock.close()
        del live[id(conn)]
        stats.latencies.append(now - conn.started)
        if kind is None:
            stats.ok += 1
            if storm and conn.client not in stats.accepted:
                pending -= 1
            stats.accepted.add(conn.client)
            if not storm:
                heapq.heappush(heap, (now + interval * rng.uniform(0.9, 1.1), conn.client))
            return
        stats.fail(kind)
        if storm:
            again(conn, now, retry_after)
        else:
            # The sender's backoff starts at one interval (its next try is the next beat), or
            # the central's Retry-After.
            heapq.heappush(heap, (now + retry_delay(retry_after), conn.client))

    def launch(client: int, now: float) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        conn = _Conn(client, sock, now, requests[client])
        code = sock.connect_ex(("127.0.0.1", port))
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            stats.latencies.append(0.0)
            stats.fail(errno.errorcode.get(code, str(code)))
            again(conn, now, None)
            if not storm:
                heapq.heappush(heap, (now + interval * rng.uniform(0.9, 1.1), client))
            return
        live[id(conn)] = conn
        sel.register(sock, selectors.EVENT_WRITE, conn)

    next_sweep = start + 1.0
    while True:
        now = time.monotonic()
        if storm and pending == 0 and not live:
            break
        if now >= end and (storm or not live or now >= end + ANSWER_TIMEOUT):
            break
        while heap and heap[0][0] <= now and len(live) < MAX_IN_FLIGHT:
            due, client = heapq.heappop(heap)
            if not storm and due >= end:
                continue  # past the phase: not sent
            launch(client, now)
        timeout = 0.05
        if heap:
            timeout = max(0.0, min(timeout, heap[0][0] - now))
        for key, mask in sel.select(timeout):
            conn: _Conn = key.data
            now = time.monotonic()
            try:
                if mask & selectors.EVENT_WRITE:
                    if not conn.connected:
                        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            finish(conn, now, errno.errorcode.get(err, str(err)), None)
                            continue
                        conn.connected = True
                    sent = conn.sock.send(conn.out)
                    conn.out = conn.out[sent:]
                    if not conn.out:
                        sel.modify(conn.sock, selectors.EVENT_READ, conn)
                else:
                    chunk = conn.sock.recv(65536)
                    if chunk:
                        conn.answer += chunk
                        continue
                    status, retry = _status_and_retry(bytes(conn.answer))
                    finish(conn, now, None if status == 200 else f"http_{status}", retry)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                finish(conn, now, errno.errorcode.get(exc.errno or 0, "oserror"), None)
        if now >= next_sweep:
            next_sweep = now + 1.0
            for conn in list(live.values()):
                limit = ANSWER_TIMEOUT if conn.connected else CONNECT_TIMEOUT
                if now - conn.started > limit:
                    finish(conn, now, "timeout", None)
        if not storm and not heap and not live:
            break
    sel.close()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    stats.cpu_seconds = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    return stats
