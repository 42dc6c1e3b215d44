"""An intake worker of the central: accepts heartbeats on the central's port in a process of its
own and hands them to the central process (`central.intake_workers` > 0).

Owns what one worker process does. The central process (api/central_service.py with
api/intake_owner.py) starts it with fork+exec (`python -m mastercontrol.api.central_intake`),
passing the public listening socket and its end of a private socketpair (api/intake_link.py)
as inherited fds; everything else it needs (settings, the operator token, the inventory's path,
the header secret) comes as the first message on that link, never on the command line. It runs
Waitress with the central's tuning on the inherited socket, three layers outermost first:

- load shedding (api/overload.py) on its own queue and connection counts, and on the central's
  flush as the central reports it over the link;
- the heartbeat fast path (api/central_heartbeat.py) with its own Roster, built from the same
  inventory with the same code (`load_roster`) and rebuilt when the file changes or the
  central forwards SIGHUP: an accepted heartbeat is sent to the central over the link (the
  parsed record) and answered 200 here with the central's body. If the central stops reading,
  the link fills and a send waits, at most LINK_TIMEOUT: then that heartbeat is answered 503 +
  Retry-After; meanwhile the worker's queue grows and its shedder sheds the others, so the
  pressure reaches the senders;
- everything else (a refused heartbeat with its body, the operator API, the dashboard, login,
  static files, remote control) forwarded as HTTP to the central's unix socket with the
  caller's address (api/intake_forward.py), so the central answers it exactly as without
  workers.

It never outlives the central: PR_SET_PDEATHSIG (SIGKILL) first thing, then a check that the
central is still its parent; and the link's end of file stops it. Its shed count reaches the
central's /metrics over the link. Must not import daemon/ or child/; serves no Bottle app (the
api/ modules it uses import bottle for their constants only).
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import waitress.server

from mastercontrol.api.central_heartbeat import Busy, with_fast_path
from mastercontrol.api.central_service import (
    CENTRAL_TUNING,
    InventoryWatch,
    central_shedder,
    load_roster,
)
from mastercontrol.api.intake_forward import FORWARD_MARGIN, Forward, open_dir
from mastercontrol.api.intake_link import LINK_TIMEOUT, Hello, encode, messages, send
from mastercontrol.api.overload import with_load_shedding
from mastercontrol.api.server import serve
from mastercontrol.fleet.intake import Heartbeat
from mastercontrol.fleet.roster import Roster

log = logging.getLogger("mastercontrol.central.intake")

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
REPORT_EVERY = 1.0  # seconds between reports of the counts, and inventory checks
EX_ORPHAN = 3  # the central was gone before this worker could start
BUSY_RETRY_AFTER = 5  # seconds: a heartbeat the central did not take within LINK_TIMEOUT


def die_with_parent() -> None:
    """SIGKILL this process when the thread of the central that started it ends."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG): %s", os.strerror(ctypes.get_errno()))


class Link:
    """The worker's end of the link: heartbeats out, the central's flush age in, the counts."""

    def __init__(self, sock: socket.socket, incoming: Iterator[tuple[Any, ...]]) -> None:
        self.sock = sock
        self.incoming = incoming
        self.shed = 0
        self._lock = threading.Lock()
        self._flush = (0.0, 0.0)  # (seconds the central's flush had run, monotonic of the note)

    def take(self, hb: Heartbeat) -> float | None:
        """Hand `hb` to the central; its received_at, or None when it cannot go this way (then
        the request is forwarded over HTTP instead). A full link is waited on for at most
        LINK_TIMEOUT (the socket's timeout), then the heartbeat is Busy: shed."""
        data = encode(("heartbeat", hb))
        if data is None:
            return None
        try:
            send(self.sock, data)  # one datagram: threads need no lock to share the socket
        except TimeoutError:
            self.reject("overloaded")
            raise Busy(BUSY_RETRY_AFTER) from None
        except OSError:
            return None
        return time.time()

    def reject(self, reason: str) -> None:
        with self._lock:
            self.shed += 1

    def flush_running_for(self) -> float:
        ran, noted = self._flush  # one read: the reader thread replaces the tuple
        return 0.0 if ran <= 0 else ran + (time.monotonic() - noted)

    def report(self) -> None:
        with self._lock:
            shed = self.shed
        data = encode(("shed", shed))
        if data is not None:
            send(self.sock, data, block=False)  # a full link skips a report, never blocks

    def read(self) -> None:
        """The central's notes until the link ends; then this worker stops."""
        for message in self.incoming:
            if message[0] == "flush" and isinstance(message[1], float):
                self._flush = (message[1], time.monotonic())
        log.info("the central closed the link: stopping")
        os.kill(os.getpid(), signal.SIGTERM)


class Watch(threading.Thread):
    """Reports the counts and rebuilds the roster when the inventory changes or on SIGHUP."""

    def __init__(self, hello: Hello, link: Link, roster: Roster) -> None:
        super().__init__(name="intake-watch", daemon=True)
        self.hello = hello
        self.link = link
        self.roster = roster
        self.inventory_watch = InventoryWatch(Path(hello.inventory))

    def run(self) -> None:
        while True:
            time.sleep(REPORT_EVERY)
            try:
                self.link.report()
            except OSError:
                return  # the link is gone: Link.read stops the worker
            if self.inventory_watch.due():
                self.roster, _ = load_roster(
                    Path(self.hello.inventory),
                    self.hello.operator_token,
                    self.hello.settings.accept_unknown_clients,
                )


def build_server(hello: Hello, listen: socket.socket, link: Link, watch: Watch) -> Any:
    """The worker's Waitress server on the inherited socket (its layers: see the docstring)."""
    dir_fd = open_dir(hello.socket_dir)
    timeout = hello.settings.client_timeout_seconds + FORWARD_MARGIN
    forward = Forward(dir_fd, hello.socket_name, hello.secret, timeout)
    app = with_fast_path(forward, lambda: watch.roster, link.take)
    shedder = central_shedder(link.flush_running_for, hello.settings)
    server = waitress.server.create_server(
        with_load_shedding(app, shedder, link), sockets=[listen], **CENTRAL_TUNING
    )  # its `backlog`: Waitress calls listen() again on the socket, with the same value
    shedder.attach_waitress(server)
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="an intake worker of the central (internal)")
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--link-fd", type=int, required=True)
    parser.add_argument("--central-pid", type=int, required=True)
    args = parser.parse_args(argv)
    die_with_parent()
    if os.getppid() != args.central_pid:
        return EX_ORPHAN  # the central died before PR_SET_PDEATHSIG was set
    link_sock = socket.socket(fileno=args.link_fd)
    link_sock.settimeout(LINK_TIMEOUT)
    incoming = messages(link_sock)
    first = next(incoming, None)
    if first is None or first[0] != "hello" or not isinstance(first[1], Hello):
        return EX_ORPHAN
    hello: Hello = first[1]
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format=f"%(levelname)s %(name)s[{hello.index}]: %(message)s",
    )  # fmt: skip
    link = Link(link_sock, incoming)
    roster, _ = load_roster(
        Path(hello.inventory), hello.operator_token, hello.settings.accept_unknown_clients
    )
    watch = Watch(hello, link, roster)

    def _hup(signum: int, _frame: FrameType | None) -> None:
        watch.inventory_watch.requested.set()

    signal.signal(signal.SIGHUP, _hup)
    listen = socket.socket(fileno=args.listen_fd)
    server = build_server(hello, listen, link, watch)
    threading.Thread(target=link.read, name="intake-link", daemon=True).start()
    watch.start()
    log.info("intake worker %d (pid %d) accepting", hello.index, os.getpid())
    serve(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
