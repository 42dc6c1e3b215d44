"""The heartbeat sender against a real mastercontrold and a real HTTP receiver on 127.0.0.1.

The service runs as a subprocess calling `mastercontrol.fleet.heartbeat_service.main(...)` with
the params of the internal-service contract; the "central" is an http.server in this process
(its own thread) that records every POST. Outages are real: the receiver answers 503, or its
port is closed, then it comes back on the same port.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mastercontrol import __version__
from tests.integration.harness import REPO, Daemon, wait_for

TOKEN = "hb-test-token-7f3a9c"  # distinctive, so a leak into a log or argv is findable
INTERVAL = 0.5


class Central:
    """A stand-in for the central API's heartbeat endpoint; records what arrives."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []  # {"at", "headers", "body", "path"}
        self.tries = 0  # every request, answered 2xx or not
        self.status = 200
        self.lock = threading.Lock()
        self.port = 0
        self.server: ThreadingHTTPServer | None = None
        self.up()

    def up(self) -> None:
        central = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                with central.lock:
                    central.tries += 1
                    status = central.status
                    if status == 200:
                        central.received.append(
                            {
                                "at": time.time(),
                                "path": self.path,
                                "headers": dict(self.headers),
                                "body": json.loads(raw),
                            }
                        )
                reply = b'{"ok": true}' if status == 200 else b'{"error": {"code": "down"}}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        """Close the port: tries now get `connection refused`."""
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
        self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r["body"] for r in self.received]

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def wait_count(self, n: int, timeout: float = 30) -> list[dict[str, Any]]:
        wait_for(lambda: self.count() >= n, timeout, 0.05, f"{n} heartbeats")
        with self.lock:
            return list(self.received)


@pytest.fixture
def central() -> Iterator[Central]:
    c = Central()
    try:
        yield c
    finally:
        if c.server is not None:
            c.down()


class Sender:
    """The heartbeat service in a subprocess of its own session."""

    def __init__(self, root: Path, config_dir: Path, socket_path: Path, state_dir: Path) -> None:
        self.root = root
        self.log_path = root / "heartbeat.log"
        params = {
            "config_dir": str(config_dir),
            "socket_path": str(socket_path),
            "state_dir": str(state_dir),
            "log_dir": str(root / "log"),
            "section_digest": "0" * 64,
        }
        code = (
            f"from mastercontrol.fleet.heartbeat_service import main; main(**{json.dumps(params)})"
        )
        env = {"PATH": "/usr/bin:/bin", "MCTL_RELEASE": "test-release-42"}
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=env,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines(self, text: str) -> list[str]:
        return [line for line in self.log().splitlines() if text in line]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def write_daemon_yaml(config_dir: Path, central_url: str, **fleet: Any) -> None:
    settings = {
        "client_name": "pi-test",
        "central_api_url": central_url,
        "heartbeat_interval_seconds": INTERVAL,
        "api_token": TOKEN,
        **fleet,
    }
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "daemon.yaml").write_text(json.dumps({"fleet": settings}))


@contextlib.contextmanager
def sender_for(daemon: Daemon) -> Iterator[Sender]:
    s = Sender(daemon.root, daemon.config_dir, daemon.socket_path, daemon.db_path.parent)
    try:
        yield s
    finally:
        s.cleanup()


def test_heartbeats_carry_the_device_state_and_the_token(daemon: Daemon, central: Central) -> None:
    write_daemon_yaml(daemon.config_dir, central.url)
    daemon.workload("sleeper", "sleep_forever", version="2.5.0")
    daemon.start()
    pid = daemon.wait_state("sleeper", "RUNNING")["pid"]
    with sender_for(daemon) as sender:
        records = central.wait_count(2)
        first = records[0]
        assert first["path"] == "/api/v1/heartbeat"
        assert first["headers"]["Authorization"] == f"Bearer {TOKEN}"
        assert first["headers"]["Content-Type"] == "application/json"
        body = first["body"]
        assert body["client_name"] == "pi-test"
        assert abs(body["sent_at"] - first["at"]) < 60  # epoch seconds, not monotonic
        assert body["daemon_version"] == __version__
        assert body["release"] == "test-release-42"
        assert body["api_url"] == "http://127.0.0.1:9100"
        assert body["master"]["reachable"] is True and body["master"]["pid"] == daemon.pid
        (sleeper,) = [w for w in body["workloads"] if w["name"] == "sleeper"]
        assert sleeper["state"] == "RUNNING" and sleeper["pid"] == pid
        assert sleeper["version"] == "2.5.0" and sleeper["runs"] >= 1
        assert sleeper["restarts"] == 0 and "last_exit" in sleeper
        system = body["system"]
        assert 0 <= system["cpu_percent"] <= 100 and len(system["load"]) == 3
        assert system["memory"]["total_bytes"] > 0
        assert system["disk"]["state"]["path"] == str(daemon.db_path.parent)
        assert system["disk"]["state"]["free_bytes"] > 0
        assert system["uptime_seconds"] > 0
        assert "temperature_c" in system and "throttling" in system
        assert records[1]["body"]["sent_at"] > body["sent_at"]
        cmdline = Path(f"/proc/{sender.proc.pid}/cmdline").read_bytes().decode()
        assert sender.stop() == 0
    assert TOKEN not in cmdline
    log = sender.log()
    assert TOKEN not in log
    assert "sending heartbeats as pi-test" in log and "stopping on SIGTERM" in log
    assert "Traceback" not in log


def test_a_failing_central_gets_backoff_and_one_log_line_per_outage(
    daemon: Daemon, central: Central
) -> None:
    write_daemon_yaml(daemon.config_dir, central.url)
    daemon.start()
    with sender_for(daemon) as sender:
        central.wait_count(1)
        with central.lock:
            central.status = 503
            tries_before = central.tries
        wait_for(lambda: sender.lines("failed: HTTP 503"), what="the outage's log line")
        outage_started = time.monotonic()
        # Without backoff a 0.5 s interval means ~8 tries in 4 s; with it 0.5, 1, 2 s: 3-4.
        time.sleep(4.0)
        with central.lock:
            tries_in_outage = central.tries - tries_before
            central.status = 200
        outage = time.monotonic() - outage_started
        wait_for(lambda: sender.lines("delivered again"), what="the recovery's log line")
        central.wait_count(central.count() + 2)
        assert sender.proc.poll() is None
    assert 1 <= tries_in_outage <= 5, (tries_in_outage, outage)
    assert len(sender.lines(" failed: ")) == 1  # one line, not one per try
    (back,) = sender.lines("delivered again")
    assert "failed tries" in back


def test_after_the_central_was_down_only_the_latest_state_is_sent(
    daemon: Daemon, central: Central
) -> None:
    write_daemon_yaml(daemon.config_dir, central.url)
    daemon.workload("sleeper", "sleep_forever")
    daemon.start()
    daemon.wait_state("sleeper", "RUNNING")
    with sender_for(daemon) as sender:
        central.wait_count(1)
        central.down()
        wait_for(lambda: sender.lines(" failed: "), what="the outage's log line")
        daemon.ctl("stop", "sleeper")  # the state changes while the central is away
        time.sleep(2.0)  # several failed tries
        back_at = time.time()
        before = central.count()
        central.up()  # same port
        records = central.wait_count(before + 2)[before:]
        assert sender.proc.poll() is None
    # The first heartbeat after the outage is built after it ended and shows the new state:
    # no heartbeat of the outage was queued and flushed.
    assert all(r["body"]["sent_at"] >= back_at - 1.0 for r in records)
    (sleeper,) = [w for w in records[0]["body"]["workloads"] if w["name"] == "sleeper"]
    assert sleeper["state"] == "STOPPED"
    assert len(sender.lines(" failed: ")) == 1
    assert len(sender.lines("delivered again")) == 1
    # Refused, or reset when the shutdown caught a request in flight.
    assert "failed: connection re" in sender.lines(" failed: ")[0].lower()


def test_without_a_master_heartbeats_go_on_and_it_is_logged_once(
    tmp_path: Path, central: Central
) -> None:
    config_dir = tmp_path / "conf"
    write_daemon_yaml(config_dir, central.url)
    sender = Sender(tmp_path, config_dir, tmp_path / "no-daemon.sock", tmp_path)
    try:
        bodies = [r["body"] for r in central.wait_count(3)]
        assert sender.proc.poll() is None
    finally:
        sender.stop()
        sender.cleanup()
    assert all(b["master"]["reachable"] is False and b["workloads"] == [] for b in bodies)
    assert all(b["daemon_version"] == __version__ for b in bodies)
    assert len(sender.lines("master not answering")) == 1


def test_sigterm_ends_it_even_while_the_central_hangs(tmp_path: Path) -> None:
    # A listener that never accepts: the POST connects (backlog) and then waits for an answer.
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)
    config_dir = tmp_path / "conf"
    write_daemon_yaml(
        config_dir, f"http://127.0.0.1:{hung.getsockname()[1]}", heartbeat_interval_seconds=30
    )
    sender = Sender(tmp_path, config_dir, tmp_path / "no-daemon.sock", tmp_path)
    try:
        wait_for(lambda: sender.lines("sending heartbeats"), what="the service to start")
        time.sleep(0.5)  # into the hanging POST
        assert sender.stop() == 0
    finally:
        sender.cleanup()
        hung.close()
    assert "stopping on SIGTERM" in sender.log()
    assert "Traceback" not in sender.log()


@pytest.mark.parametrize(
    ("daemon_yaml", "message"),
    [
        ('{"fleet": {"client_name": "x"}}', "fleet.central_api_url is not set"),
        (f'{{"fleet": {{"api_token": {{"nested": "{TOKEN}"}}}}}}', "1 problem(s)"),
    ],
    ids=["no-central-url", "invalid-daemon-yaml"],
)
def test_an_unusable_config_is_a_clear_error_without_the_token(
    tmp_path: Path, daemon_yaml: str, message: str
) -> None:
    config_dir = tmp_path / "conf"
    config_dir.mkdir()
    (config_dir / "daemon.yaml").write_text(daemon_yaml)
    sender = Sender(tmp_path, config_dir, tmp_path / "no-daemon.sock", tmp_path)
    try:
        code = sender.proc.wait(30)
    finally:
        sender.cleanup()
    assert code == 78  # EX_CONFIG
    log = sender.log()
    assert message in log and "Traceback" not in log and TOKEN not in log


def test_the_token_can_come_from_a_private_token_file(tmp_path: Path, central: Central) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"  {TOKEN}-from-file\n")
    token_file.chmod(0o600)
    config_dir = tmp_path / "conf"
    write_daemon_yaml(config_dir, central.url, api_token=None, api_token_file=str(token_file))
    sender = Sender(tmp_path, config_dir, tmp_path / "no-daemon.sock", tmp_path)
    try:
        (record,) = central.wait_count(1)[:1]
    finally:
        sender.stop()
        sender.cleanup()
    assert record["headers"]["Authorization"] == f"Bearer {TOKEN}-from-file"
    assert TOKEN not in sender.log()


def test_a_world_readable_token_file_is_refused_with_a_clear_line(
    tmp_path: Path, central: Central
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o644)
    config_dir = tmp_path / "conf"
    write_daemon_yaml(config_dir, central.url, api_token=None, api_token_file=str(token_file))
    sender = Sender(tmp_path, config_dir, tmp_path / "no-daemon.sock", tmp_path)
    try:
        code = sender.proc.wait(30)
    finally:
        sender.cleanup()
    log = sender.log()
    assert code == 78
    assert "readable by every user" in log and str(token_file) in log
    assert TOKEN not in log and "Traceback" not in log
    assert central.count() == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_fleet_enabled_runs_heartbeat_under_the_master_and_restarts_it(
    daemon: Daemon, central: Central
) -> None:
    # The real thing: the master synthesizes @heartbeat from daemon.yaml and forks it.
    write_daemon_yaml(daemon.config_dir, central.url, enabled=True, api_port=free_port())
    (daemon.config_dir / "daemon.yaml").chmod(0o600)  # it holds a token
    daemon.workload("sleeper", "sleep_forever")
    daemon.start()
    first_pid = daemon.wait_state("@heartbeat", "RUNNING")["pid"]
    views = daemon.workloads()
    assert views["@heartbeat"]["internal"] is True
    body = central.wait_count(1)[0]["body"]
    by_name = {w["name"]: w for w in body["workloads"]}
    assert by_name["@heartbeat"]["internal"] is True and by_name["sleeper"]["internal"] is False
    assert body["master"]["pid"] == daemon.pid
    assert body["system"]["disk"]["log"]["path"] == str(daemon.log_dir)

    os.kill(first_pid, signal.SIGKILL)
    second_pid = wait_for(
        lambda: (
            (st := daemon.status("@heartbeat"))["state"] == "RUNNING"
            and st["pid"] != first_pid
            and st["pid"]
        ),
        what="@heartbeat restarted after kill -9",
    )
    before = central.count()
    central.wait_count(before + 1)
    status = json.dumps(daemon.status("@heartbeat"))
    cmdline = Path(f"/proc/{second_pid}/cmdline").read_bytes().decode(errors="replace")
    log = (daemon.log_dir / "@heartbeat.log").read_text(errors="replace")
    daemon.ctl("down")
    assert daemon.proc is not None and daemon.proc.wait(30) == 0
    assert TOKEN not in status and TOKEN not in cmdline and TOKEN not in log
    assert "sending heartbeats as pi-test" in log
