"""A busy central sheds heartbeats with 503 + Retry-After, and a real device's sender waits.

Both sides real: a mastercontrold with `fleet.enabled` (the master forks its own `@heartbeat`)
reporting to (1) the real central service process, pushed to its connection mark by idle
connections from this test, and (2) a stand-in central on 127.0.0.1 that answers 503 with a
Retry-After, to time the sender's next try (only a lower bound is asserted: load can only make
it later).
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mastercontrol.api.central_service import CENTRAL_TUNING
from tests.integration.harness import Daemon, wait_for
from tests.integration.test_central_service import OPERATOR, CentralProcess
from tests.integration.test_heartbeat import TOKEN, free_port, write_daemon_yaml

RETRY_AFTER = 3  # seconds the stand-in asks for; the sender's interval is 0.5 s


def heartbeat_log(daemon: Daemon) -> str:
    path = daemon.log_dir / "@heartbeat.log"
    return path.read_text(errors="replace") if path.exists() else ""


def metrics(central: CentralProcess) -> str:
    req = urllib.request.Request(central.url + "/metrics")
    req.add_header("Authorization", f"Bearer {OPERATOR}")
    with urllib.request.urlopen(req, timeout=10) as reply:
        return str(reply.read().decode())


def shed_count(central: CentralProcess) -> int:
    for line in metrics(central).splitlines():
        if line.startswith('mastercontrol_central_heartbeats_rejected_total{reason="overloaded"}'):
            return int(float(line.split()[-1]))
    return 0


@pytest.fixture
def central(tmp_path: Path) -> Iterator[CentralProcess]:
    c = CentralProcess(tmp_path / "central")
    c.inventory([{"name": "pi-test", "host": "127.0.0.1", "api_token": TOKEN}])
    c.start()
    yield c
    c.stop()


def test_a_central_at_its_connection_mark_sheds_and_the_real_sender_comes_back(
    daemon: Daemon, central: CentralProcess
) -> None:
    write_daemon_yaml(daemon.config_dir, central.url, enabled=True, api_port=free_port())
    (daemon.config_dir / "daemon.yaml").chmod(0o600)  # it holds a token
    daemon.start()
    daemon.wait_state("@heartbeat", "RUNNING")
    wait_for(
        lambda: central.get("/api/v1/clients/pi-test")["status"] == "online",
        60, 0.1, "pi-test online",
    )  # fmt: skip
    # The service sheds from `connection_limit - threads` open connections (Waitress counts
    # its listening socket and wake-up pipe among them): these idle ones reach the mark and
    # leave room under the limit for the heartbeat and this test's own requests.
    mark = int(CENTRAL_TUNING["connection_limit"]) - int(CENTRAL_TUNING["threads"])
    idle: list[socket.socket] = []
    try:
        for _ in range(mark):
            idle.append(socket.create_connection(("127.0.0.1", central.port), timeout=10))
        wait_for(lambda: shed_count(central) >= 2, 60, 0.2, "heartbeats shed")
        wait_for(lambda: "retry after" in heartbeat_log(daemon), 30, 0.1, "the outage's line")
    finally:
        for sock in idle:
            sock.close()
    wait_for(lambda: "delivered again" in heartbeat_log(daemon), 60, 0.1, "the recovery's line")
    log = heartbeat_log(daemon)
    (outage,) = [line for line in log.splitlines() if " failed: " in line]
    assert "HTTP 503" in outage and "retry after" in outage, outage
    assert TOKEN not in log and "Traceback" not in log
    assert daemon.status("@heartbeat")["state"] == "RUNNING"


class BusyCentral:
    """Answers 200, except `busy` tries answered 503 + Retry-After; records every try."""

    def __init__(self) -> None:
        self.tries: list[tuple[float, int]] = []  # (monotonic arrival, status answered)
        self.busy = 0
        self.lock = threading.Lock()
        central = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with central.lock:
                    status = 503 if central.busy > 0 else 200
                    central.busy -= status == 503
                    central.tries.append((time.monotonic(), status))
                reply = b'{"accepted": true}'
                if status == 503:
                    reply = b'{"error": {"code": "overloaded", "message": "busy"}}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                if status == 503:
                    self.send_header("Retry-After", str(RETRY_AFTER))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def snapshot(self) -> list[tuple[float, int]]:
        with self.lock:
            return list(self.tries)


def test_the_real_sender_waits_out_the_retry_after_of_a_503(daemon: Daemon) -> None:
    busy = BusyCentral()
    try:
        write_daemon_yaml(daemon.config_dir, busy.url, enabled=True, api_port=free_port())
        (daemon.config_dir / "daemon.yaml").chmod(0o600)
        daemon.start()
        wait_for(lambda: len(busy.snapshot()) >= 2, 60, 0.05, "two heartbeats")
        with busy.lock:
            busy.busy = 2  # the next two tries are shed
        wait_for(
            lambda: [s for _, s in busy.snapshot()].count(200) >= 3
            and busy.snapshot()[-1][1] == 200,
            60, 0.05, "heartbeats accepted again",
        )  # fmt: skip
        tries = busy.snapshot()
    finally:
        busy.server.shutdown()
        busy.server.server_close()
    first_shed = [s for _, s in tries].index(503)
    (shed1, _), (shed2, status2), (after, status3) = tries[first_shed : first_shed + 3]
    assert (status2, status3) == (503, 200)
    # Without Retry-After the backoff would try again after 0.5 s, then 1 s.
    assert shed2 - shed1 >= RETRY_AFTER and after - shed2 >= RETRY_AFTER, tries
    log = heartbeat_log(daemon)
    assert f"HTTP 503 Service Unavailable (retry after {RETRY_AFTER}s)" in log, log
    assert "delivered again" in log
