"""The central API service as a real process: Waitress on 127.0.0.1 (a free port), a real fleet
DB file, real HTTP heartbeats; a silent client turns stale then offline; a clean stop flushes
the last interval; a restart starts from what was flushed; a non-loopback bind without a token
is refused."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

OPERATOR = "operator-token-for-tests"
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(url: str, token: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def wait_for(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class CentralProcess:
    """`mastercontrol.api.central_service.main` in its own process, as the child would run it."""

    def __init__(self, root: Path, **central: Any) -> None:
        self.root = root
        self.config = root / "config"
        self.state = root / "state"
        self.config.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(exist_ok=True)
        self.port = free_port()
        settings = {"enabled": True, "host": "127.0.0.1", "port": self.port,
                    "api_token": OPERATOR, "flush_interval_seconds": 0.2, **central}  # fmt: skip
        (self.config / "daemon.yaml").write_text(json.dumps({"central": settings}))
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def inventory(self, clients: list[dict[str, Any]]) -> None:
        (self.config / "inventory.yaml").write_text(json.dumps({"clients": clients}))

    def start(self, wait: bool = True) -> None:
        code = (
            "import sys; from mastercontrol.api.central_service import main; "
            "main(config_dir=sys.argv[1], socket_path='', state_dir=sys.argv[2], "
            "log_dir=sys.argv[2], section_digest='')"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, str(self.config), str(self.state)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        if wait:
            wait_for("the central to listen", self.listening)

    def listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"central exited: {self.output()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def output(self) -> str:
        assert self.proc is not None
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stdout is not None
        return self.proc.stdout.read().decode(errors="replace")

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)

    def get(self, path: str) -> Any:
        status, body = request(self.url + path, OPERATOR)
        assert status == 200, (path, status, body)
        return body

    def heartbeat(self, name: str, token: str, **over: Any) -> tuple[int, Any]:
        body: dict[str, Any] = {
            "client_name": name,
            "sent_at": time.time(),
            "release": "r1",
            "daemon_version": "0.9",
            "workloads": [],
            "system": {"cpu_percent": 1.0},
        }
        body.update(over)
        return request(self.url + "/api/v1/heartbeat", token, "POST", body)


@pytest.fixture
def central(tmp_path: Path) -> Iterator[CentralProcess]:
    c = CentralProcess(tmp_path, stale_after_seconds=1.5, offline_after_seconds=3)
    c.inventory([{"name": "pi-01", "host": "127.0.0.1", "api_token": "tok-1"},
                 {"name": "pi-02", "host": "127.0.0.1", "api_token": "tok-2"}])  # fmt: skip
    yield c
    if c.proc is not None:
        c.stop()


def status_of(c: CentralProcess, name: str) -> str:
    return str(c.get(f"/api/v1/clients/{name}")["status"])


def test_heartbeats_over_http_then_silence_turns_stale_then_offline(
    central: CentralProcess,
) -> None:
    central.start()
    assert status_of(central, "pi-01") == "never_seen"
    assert central.heartbeat("pi-01", "tok-1")[0] == 200
    assert central.heartbeat("pi-01", "tok-2")[0] == 403
    assert central.heartbeat("pi-01", "nope")[0] == 401
    assert status_of(central, "pi-01") == "online"
    wait_for("pi-01 stale", lambda: status_of(central, "pi-01") == "stale")
    wait_for("pi-01 offline", lambda: status_of(central, "pi-01") == "offline")

    def kinds() -> list[str]:
        events = central.get("/api/v1/events?client=pi-01")["events"]
        return [e["kind"] for e in reversed(events)]

    # The flush thread records what the API computes live, within a flush interval.
    wait_for("the offline event", lambda: kinds()[-1:] == ["offline"])
    assert central.heartbeat("pi-01", "tok-1")[0] == 200
    assert status_of(central, "pi-01") == "online"
    wait_for("the online event", lambda: kinds()[-1:] == ["online"])
    # Before: a first status once the grace ended (online, or stale if the first heartbeat
    # came right at the start), then stale, then offline: never offline before stale.
    history = kinds()
    assert history.index("stale") < history.index("offline")


def test_a_clean_stop_flushes_and_a_restart_starts_from_the_db(tmp_path: Path) -> None:
    c = CentralProcess(tmp_path, flush_interval_seconds=3600)  # only the stop flushes
    c.inventory([{"name": "pi-01", "host": "127.0.0.1", "api_token": "tok-1"}])
    c.start()
    try:
        assert c.heartbeat("pi-01", "tok-1", release="r7")[0] == 200
        assert c.stop() == 0
        db = sqlite3.connect(c.state / "fleet.db")
        assert db.execute("SELECT release FROM clients WHERE name = 'pi-01'").fetchall() == [
            ("r7",)
        ]
        db.close()
        c.start()
        view = c.get("/api/v1/clients/pi-01")
        # Just restarted: within the grace, so online even though its heartbeat is old.
        assert view["release"] == "r7" and view["status"] == "online"
        assert c.get("/api/v1/fleet")["in_grace"] is True
    finally:
        c.stop()


def kill_9(c: CentralProcess) -> None:
    assert c.proc is not None
    os.killpg(c.proc.pid, signal.SIGKILL)
    c.proc.wait(timeout=30)


def flushed_release(c: CentralProcess, name: str) -> str | None:
    db = sqlite3.connect(c.state / "fleet.db")
    try:
        row = db.execute("SELECT release FROM clients WHERE name = ?", (name,)).fetchone()
    finally:
        db.close()
    return None if row is None else str(row[0])


def test_a_crash_loses_at_most_the_heartbeats_since_the_last_flush_and_nothing_else(
    tmp_path: Path,
) -> None:
    # Flushed, then kill -9: the heartbeat survives.
    c = CentralProcess(tmp_path / "short", flush_interval_seconds=0.2)
    c.inventory([{"name": "pi-01", "host": "127.0.0.1", "api_token": "tok-1"}])
    c.start()
    try:
        assert c.heartbeat("pi-01", "tok-1", release="r7")[0] == 200
        wait_for("the flush", lambda: flushed_release(c, "pi-01") == "r7")
        kill_9(c)
        c.start()
        assert c.get("/api/v1/clients/pi-01")["release"] == "r7"
    finally:
        c.stop()
    # Never flushed (an hour's interval), then kill -9: only that heartbeat is gone; the
    # deployment record written meanwhile is not (it goes to the DB at once).
    c = CentralProcess(tmp_path / "long", flush_interval_seconds=3600)
    c.inventory([{"name": "pi-01", "host": "127.0.0.1", "api_token": "tok-1"}])
    c.start()
    try:
        assert c.heartbeat("pi-01", "tok-1", release="r8")[0] == 200
        status, dep = request(c.url + "/api/v1/deployments", OPERATOR, "POST", {"release": "r8"})
        assert status == 201
        kill_9(c)
        c.start()
        assert c.get("/api/v1/clients/pi-01")["status"] == "never_seen"
        assert c.get(f"/api/v1/deployments/{dep['id']}")["release"] == "r8"
    finally:
        c.stop()


def test_sighup_reimports_an_inventory_its_change_check_cannot_see(
    central: CentralProcess,
) -> None:
    central.start()
    path = central.config / "inventory.yaml"
    before = path.stat()
    assert central.heartbeat("pi-03", OPERATOR)[0] == 403
    # Same size and the old mtime: the periodic check sees no change; SIGHUP says there is one.
    text = path.read_text().replace('"pi-02"', '"pi-03"')
    path.write_text(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    time.sleep(1.0)  # several flush intervals: the change check ran and saw nothing
    assert request(central.url + "/api/v1/clients/pi-03", OPERATOR)[0] == 404
    assert central.proc is not None
    os.kill(central.proc.pid, signal.SIGHUP)
    wait_for(
        "pi-03 to be listed",
        lambda: request(central.url + "/api/v1/clients/pi-03", OPERATOR)[0] == 200,
    )
    assert central.heartbeat("pi-03", "tok-2")[0] == 200  # the entry (and token) pi-02 had
    assert request(central.url + "/api/v1/clients/pi-02", OPERATOR)[0] == 404  # forgotten


def test_the_inventory_is_reimported_when_it_changes(central: CentralProcess) -> None:
    central.start()
    assert central.heartbeat("pi-03", OPERATOR)[0] == 403
    central.inventory([{"name": "pi-03", "host": "127.0.0.1"}])
    wait_for(
        "pi-03 to be listed",
        lambda: request(central.url + "/api/v1/clients/pi-03", OPERATOR)[0] == 200,
    )
    assert central.heartbeat("pi-03", OPERATOR)[0] == 200
    # pi-01 left the inventory without ever heartbeating: forgotten.
    assert request(central.url + "/api/v1/clients/pi-01", OPERATOR)[0] == 404


def test_a_non_loopback_bind_without_a_token_is_refused(tmp_path: Path) -> None:
    c = CentralProcess(tmp_path, host="0.0.0.0", api_token=None)
    settings = json.loads((c.config / "daemon.yaml").read_text())
    del settings["central"]["api_token"]
    (c.config / "daemon.yaml").write_text(json.dumps(settings))
    c.start(wait=False)
    assert c.proc is not None
    assert c.proc.wait(timeout=30) == 78
    assert "api_token" in c.output()


def test_the_master_runs_the_central_api_when_central_is_enabled(daemon: Any) -> None:
    port = free_port()
    settings = {"central": {"enabled": True, "host": "127.0.0.1", "port": port,
                            "api_token": OPERATOR, "flush_interval_seconds": 0.5}}  # fmt: skip
    daemon.write("daemon.yaml", json.dumps(settings))
    daemon.start()
    view = daemon.wait_state("@central-api", "RUNNING")
    assert view["pid"]

    def answers() -> bool:
        try:
            return request(f"http://127.0.0.1:{port}/api/v1/fleet", OPERATOR)[0] == 200
        except OSError:
            return False

    wait_for("the central API to answer", answers)
    assert request(f"http://127.0.0.1:{port}/api/v1/fleet", "wrong")[0] == 401
