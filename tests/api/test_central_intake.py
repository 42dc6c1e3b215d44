"""The central with intake workers (`central.intake_workers: 2`) as real processes: the central
process and its two workers (api/central_intake.py) on one real port of 127.0.0.1, a real
fleet DB, real HTTP. Heartbeats land in the central's memory, everything else is forwarded to
it with the caller's address, a worker killed with SIGKILL is restarted, a SIGKILLed central
leaves no worker behind, and a stalled central makes its workers shed instead of hang."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psutil
import pytest

from mastercontrol.api.intake_forward import PEER, SCHEME, SECRET, open_dir, socket_path
from mastercontrol.api.intake_link import LINK_BUFFER
from mastercontrol.api.intake_owner import SOCKET_NAME
from mastercontrol.config.internal import CENTRAL_API
from tests.api.service import free_port
from tests.api.test_central_app import FakeClientAPI, client_api
from tests.integration.harness import Daemon
from tests.integration.test_central_service import OPERATOR, CentralProcess, wait_for

__all__ = ["client_api"]  # the fixture, imported to be used here

CLIENTS = 6


def token(i: int) -> str:
    return f"tok-{i}"


def name(i: int) -> str:
    return f"pi-{i:02d}"


class Reply:
    def __init__(self, resp: http.client.HTTPResponse) -> None:
        self.status = resp.status
        self.headers = resp.headers
        self.body = resp.read()

    def json(self) -> Any:
        return json.loads(self.body)


def send(
    port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        return Reply(conn.getresponse())
    finally:
        conn.close()


def operator(port: int, method: str, path: str, **headers: str) -> Reply:
    return send(port, method, path, {"Authorization": f"Bearer {OPERATOR}", **headers})


def heartbeat(port: int, i: int, tok: str | None = None, workloads: int = 0) -> Reply:
    body = {
        "client_name": name(i), "sent_at": time.time(), "release": "r1", "daemon_version": "0.9",
        "workloads": [{"name": f"w{n}", "state": "RUNNING", "pid": 100 + n, "version": "1.0",
                       "runs": n, "restarts": 0, "last_exit": {"code": 0, "reason": "exit"}}
                      for n in range(workloads)],
        "system": {"cpu_percent": 1.0},
    }  # fmt: skip
    headers = {"Authorization": f"Bearer {tok or token(i)}", "Content-Type": "application/json"}
    return send(port, "POST", "/api/v1/heartbeat", headers, json.dumps(body).encode())


def workers_of(c: CentralProcess) -> list[psutil.Process]:
    """The central's live intake workers (not one that has died and is not yet reaped)."""
    assert c.proc is not None
    found = []
    for p in psutil.Process(c.proc.pid).children():
        try:
            if "mastercontrol.api.central_intake" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.Error:  # a zombie, or gone meanwhile
            pass
    return found


def serving(c: CentralProcess) -> bool:
    """Both workers have their Waitress threads (8) and the link's (2) up: past start-up."""
    try:
        workers = workers_of(c)
        return len(workers) == 2 and all(p.num_threads() >= 11 for p in workers)
    except psutil.Error:
        return False


def metric(c: CentralProcess, line: str) -> float:
    text = operator(c.port, "GET", "/metrics").body.decode()
    found = re.search(rf"^{re.escape(line)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else -1.0


def make_central(root: Path, api_url: str | None = None, **settings: Any) -> CentralProcess:
    c = CentralProcess(root, intake_workers=2, **settings)
    clients: list[dict[str, Any]] = [
        {"name": name(i), "host": "127.0.0.1", "api_token": token(i)} for i in range(CLIENTS)
    ]
    if api_url:
        clients[0]["api_url"] = api_url
    c.inventory(clients)
    return c


@pytest.fixture
def central(tmp_path: Path, client_api: str) -> Iterator[CentralProcess]:
    c = make_central(tmp_path, client_api)
    c.start()
    wait_for("two intake workers serving", lambda: serving(c))
    yield c
    if c.proc is not None:
        c.stop()


def test_many_heartbeats_from_several_clients_all_land_in_the_central(
    central: CentralProcess,
) -> None:
    rounds = 15
    with ThreadPoolExecutor(CLIENTS) as pool:
        replies = list(pool.map(lambda k: heartbeat(central.port, k % CLIENTS).status,
                                range(CLIENTS * rounds)))  # fmt: skip
    assert replies == [200] * (CLIENTS * rounds)
    listed = operator(central.port, "GET", "/api/v1/clients").json()["clients"]
    assert {c["name"] for c in listed if c["status"] == "online"} == {
        name(i) for i in range(CLIENTS)
    }
    handed = sum(metric(central, f'mastercontrol_central_intake_heartbeats_total{{worker="{w}"}}')
                 for w in (0, 1))  # fmt: skip
    assert handed == CLIENTS * rounds
    assert metric(central, "mastercontrol_central_heartbeats_total") == CLIENTS * rounds
    # The same answer as without workers: the client's name and when it was received.
    answer = heartbeat(central.port, 1).json()
    assert answer["accepted"] is True and answer["client"] == name(1)
    assert abs(answer["received_at"] - time.time()) < 60


def test_a_refused_heartbeat_is_still_refused_with_its_body_and_counted(
    central: CentralProcess,
) -> None:
    unknown = heartbeat(central.port, 0, tok="nobody-has-this")
    assert unknown.status == 401 and unknown.json()["error"]["code"] == "unauthorized"
    assert "Bearer" in (unknown.headers.get("WWW-Authenticate") or "")
    wrong = heartbeat(central.port, 0, tok=token(1))
    assert wrong.status == 403 and wrong.json()["error"]["code"] == "forbidden"
    line = "mastercontrol_central_heartbeats_rejected_total{reason=%s}"
    assert metric(central, line % '"unauthorized"') == 1
    assert metric(central, line % '"wrong_client"') == 1


def test_dashboard_login_a_page_and_the_api_work_through_the_workers(
    central: CentralProcess,
) -> None:
    assert heartbeat(central.port, 2).status == 200
    assert send(central.port, "GET", "/").status in (200, 303)  # the login page, never a 401

    def log_in(headers: dict[str, str]) -> Reply:
        form = send(central.port, "GET", "/login", headers)
        assert form.status == 200, form.body
        login_cookie = (form.headers.get("Set-Cookie") or "").split(";")[0]
        body = urlencode({"csrf": login_cookie.split("=", 1)[1], "token": OPERATOR}).encode()
        return send(central.port, "POST", "/login", {
            **headers, "Cookie": login_cookie,
            "Content-Type": "application/x-www-form-urlencoded"}, body)  # fmt: skip

    reply = log_in({})
    assert reply.status == 303
    session = [c for c in reply.headers.get_all("Set-Cookie") or [] if c.startswith("mc_session")]
    assert session and not re.search(r";\s*Secure", session[0], re.I), session
    page = send(central.port, "GET", "/", {"Cookie": session[0].split(";")[0]})
    assert page.status == 200 and name(2).encode() in page.body
    static = send(
        central.port, "GET", re.findall(rb'href="(/static/[^"]+)"', page.body)[0].decode()
    )
    assert static.status == 200
    fleet = operator(central.port, "GET", "/api/v1/fleet")
    assert fleet.status == 200 and fleet.json()["by_status"]["online"] >= 1
    # Behind the control host's own TLS proxy (from 127.0.0.1) the cookie is Secure, as
    # without workers: the worker's Waitress believed X-Forwarded-Proto, the central its scheme.
    secure = log_in({"X-Forwarded-Proto": "https"})
    cookies = [c for c in secure.headers.get_all("Set-Cookie") or [] if c.startswith("mc_session")]
    assert cookies and re.search(r";\s*Secure", cookies[0], re.I), cookies


def test_a_caller_cannot_choose_its_address_with_the_workers_header(
    central: CentralProcess,
) -> None:
    forged = {PEER: "203.0.113.9", SECRET: "a-guess", SCHEME: "https"}
    reply = operator(central.port, "POST", f"/api/v1/clients/{name(0)}/workloads/w/restart",
                     **forged)  # fmt: skip
    assert reply.status == 200, reply.body
    assert FakeClientAPI.seen and FakeClientAPI.seen[-1][1] == "/api/v1/workloads/w/restart"
    (event,) = operator(central.port, "GET", "/api/v1/events?kind=action").json()["events"]
    assert event["actor"] == "operator@127.0.0.1"
    # The central's own socket believes nobody without the secret, whatever they send.
    path = central.state / "central-intake" / SOCKET_NAME
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    for headers in ({}, forged):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            dir_fd = open_dir(str(path.parent))  # (a tmp_path may pass sun_path's 108 bytes)
            try:
                sock.connect(socket_path(dir_fd, SOCKET_NAME))
            finally:
                os.close(dir_fd)
            lines = ["GET /api/v1/fleet HTTP/1.1", "Host: x", f"Authorization: Bearer {OPERATOR}",
                     "Connection: close", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            answer = b""
            for _ in range(100):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 403"), answer[:200]


def test_a_killed_worker_is_restarted_and_heartbeats_go_on(central: CentralProcess) -> None:
    victim = workers_of(central)[0]
    victim.send_signal(signal.SIGKILL)
    wait_for("the worker restarted", lambda: victim.pid not in [p.pid for p in workers_of(central)]
             and serving(central))  # fmt: skip
    restarts = [metric(central, f'mastercontrol_central_intake_restarts_total{{worker="{w}"}}')
                for w in (0, 1)]  # fmt: skip
    assert sorted(restarts) == [0, 1]
    replies = [heartbeat(central.port, k % CLIENTS).status for k in range(20)]
    assert replies == [200] * 20
    assert metric(central, "mastercontrol_central_heartbeats_total") == 20
    assert central.proc is not None
    assert central.stop() == 0
    assert f"(pid {victim.pid}) exited with signal 9" in central.output()


def test_a_killed_central_leaves_no_worker(tmp_path: Path) -> None:
    c = make_central(tmp_path)
    c.start()
    try:
        wait_for("two intake workers serving", lambda: serving(c))
        pids = [p.pid for p in workers_of(c)]
        assert c.proc is not None
        c.proc.send_signal(signal.SIGKILL)  # the central only: not its process group
        c.proc.wait(timeout=30)

        def gone(pid: int) -> bool:
            try:
                return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True

        wait_for("no worker left", lambda: all(gone(pid) for pid in pids))
        with socket.socket() as s:  # nobody holds the port: a new central can take it
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", c.port))
    finally:
        if c.proc is not None and c.proc.poll() is None:
            c.stop()


def test_a_clean_stop_flushes_what_the_workers_handed_over(tmp_path: Path) -> None:
    c = make_central(tmp_path, flush_interval_seconds=3600)  # only the stop flushes
    c.start()
    try:
        assert [heartbeat(c.port, i).status for i in range(CLIENTS)] == [200] * CLIENTS
    finally:
        assert c.stop() == 0
    db = sqlite3.connect(c.state / "fleet.db")
    try:
        seen = db.execute("SELECT COUNT(*) FROM clients WHERE last_seen IS NOT NULL").fetchone()
    finally:
        db.close()
    assert seen == (CLIENTS,)
    assert "did not stop" not in c.output()


def _rounds_to_fill_both_links(message_bytes: int = 50_000, per_round: int = 32) -> int:
    """Rounds of `per_round` heartbeats that fill two links' send buffers (the kernel doubles
    SO_SNDBUF up to net.core.wmem_max; intake_link.py asks for LINK_BUFFER), at most 200."""
    try:
        wmem_max = int(Path("/proc/sys/net/core/wmem_max").read_text())
    except (OSError, ValueError):
        wmem_max = LINK_BUFFER
    per_link = 2 * min(wmem_max, LINK_BUFFER) // message_bytes + 1
    return min(200, (2 * per_link) // per_round + 2)


def test_a_stalled_central_makes_its_workers_shed_not_hang(central: CentralProcess) -> None:
    assert central.proc is not None
    assert heartbeat(central.port, 0).status == 200
    os.kill(central.proc.pid, signal.SIGSTOP)  # the central stops reading its links
    try:
        replies: list[Reply] = []
        with ThreadPoolExecutor(32) as pool:
            # ~140 KB heartbeats (1,000 workloads, ~55 KB on the link), 32 at a time until one
            # is shed. A link's send buffer (2 x net.core.wmem_max: 8 MiB here) holds ~146 of
            # them, and the kernel may give most connections to one worker or spread them
            # evenly: enough rounds to fill both links, and a bound.
            for _ in range(_rounds_to_fill_both_links()):
                replies += pool.map(
                    lambda k: heartbeat(central.port, k % CLIENTS, workloads=1000), range(32)
                )
                if any(r.status == 503 for r in replies):
                    break
    finally:
        os.kill(central.proc.pid, signal.SIGCONT)
    statuses = [r.status for r in replies]
    assert set(statuses) <= {200, 503}, statuses
    shed = [r for r in replies if r.status == 503]
    assert shed, "a full link should have been shed"
    assert all(r.json()["error"]["code"] == "overloaded" for r in shed)
    assert all(int(r.headers.get("Retry-After") or 0) >= 1 for r in shed)
    # Once the central reads again, every heartbeat a worker answered 200 is in its memory,
    # and the shed ones are counted.
    assert heartbeat(central.port, 1).status == 200
    wait_for("the shed counts reported", lambda: metric(
        central, 'mastercontrol_central_heartbeats_rejected_total{reason="overloaded"}')
        == len(shed))  # fmt: skip
    wait_for(
        "every 200 ingested",
        lambda: (
            metric(central, "mastercontrol_central_heartbeats_total") == statuses.count(200) + 2
        ),
    )


def test_a_real_daemon_heartbeats_through_the_workers_and_survives_a_killed_central(
    daemon: Daemon,
) -> None:
    """`make run`'s shape: one mastercontrold that is both the control host (with two intake
    workers) and a device whose real heartbeat sender reports to it."""
    port, api_port = free_port(), free_port()
    daemon.write("daemon.yaml", json.dumps({
        "fleet": {"enabled": True, "client_name": "pi-01", "api_port": api_port,
                  "central_api_url": f"http://127.0.0.1:{port}", "api_token": token(1),
                  "heartbeat_interval_seconds": 0.5},
        "central": {"enabled": True, "host": "127.0.0.1", "port": port, "api_token": OPERATOR,
                    "intake_workers": 2, "flush_interval_seconds": 0.5},
    }))  # fmt: skip
    daemon.write(
        "inventory.yaml",
        json.dumps({"clients": [{"name": "pi-01", "host": "127.0.0.1", "api_token": token(1)}]}),
    )
    daemon.start()

    def last_seen() -> float:
        try:
            reply = operator(port, "GET", "/api/v1/clients/pi-01")
        except OSError:
            return 0.0
        return float(reply.json().get("last_seen") or 0) if reply.status == 200 else 0.0

    wait_for("the device's heartbeats through the workers", lambda: last_seen() > 0)
    service = daemon.wait_state(CENTRAL_API, "RUNNING")
    central = psutil.Process(service["pid"])
    workers = [p for p in central.children() if "central_intake" in " ".join(p.cmdline())]
    assert len(workers) == 2
    central.kill()  # SIGKILL of the central process alone

    def gone(p: psutil.Process) -> bool:
        try:
            return p.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for("no worker left", lambda: all(gone(p) for p in workers))
    # The master restarts the service; its new workers take the port; heartbeats land again.
    wait_for("a new central", lambda: (daemon.status(CENTRAL_API).get("pid") or central.pid)
             != central.pid)  # fmt: skip
    before = time.time()
    wait_for("heartbeats after the restart", lambda: last_seen() >= before, timeout=60)
