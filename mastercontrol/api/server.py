"""Serving a WSGI app with Waitress, tuned for a Raspberry Pi, until SIGTERM.

Owns the Waitress settings and the serve loop; nothing about routes or the master. The app
caps request bodies at 1 MiB and answers 413 in JSON, so Waitress's own body limit sits above
that cap: Waitress's 413 is a plain-text page. Imports waitress and the stdlib; not daemon/.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import waitress.server

from mastercontrol.api.body import MAX_BODY_BYTES

log = logging.getLogger("mastercontrol.api")

# A Pi Zero has one core and 512 MiB: a few threads are plenty (every request is one short
# IPC round trip), and a small connection limit bounds memory when something floods the port.
TUNING: dict[str, Any] = {
    "threads": 4,
    "connection_limit": 32,
    "channel_timeout": 30,  # seconds an idle keep-alive connection is kept
    "cleanup_interval": 10,
    "backlog": 64,
    "max_request_header_size": 32 * 1024,
    "max_request_body_size": 2 * MAX_BODY_BYTES,  # above the app's cap: see the docstring
    "inbuf_overflow": 256 * 1024,
    "asyncore_use_poll": True,  # select() has an fd limit of 1024; poll has none
    "ident": "mastercontrol",
    "expose_tracebacks": False,
}


def make_server(app: Callable[..., Any], host: str, port: int) -> Any:
    """A bound Waitress server (`port` 0 picks a free one: see `.effective_port`)."""
    return waitress.server.create_server(app, host=host, port=port, **TUNING)


def serve(server: Any) -> None:
    """Run `server` until SIGTERM or SIGINT, then close its sockets."""

    def _stop(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server.run()
    except SystemExit:
        log.info("stopping")
    finally:
        try:
            server.close()
        except OSError as exc:
            # SystemExit can land while Waitress is closing its wake-up pipe itself; a second
            # close then finds EBADF. Nothing is left open either way: stopping is not a crash.
            log.debug("closing the server: %s", exc)
        sys.stderr.flush()
