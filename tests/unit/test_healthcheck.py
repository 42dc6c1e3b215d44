"""Health probes against real loopback servers and real commands; HealthTracker logic."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

from mastercontrol.config.model import HealthCheck
from mastercontrol.daemon.healthcheck import (
    CommandProbe,
    HttpProbe,
    Probe,
    TcpProbe,
    make_probe,
    reap_orphans,
    wait_for,
)
from mastercontrol.engine.health import HealthTracker, ProbeResult

DEADLINE = 20.0  # upper bound for any loop in these tests; normal runs take milliseconds


def wait_until(fn: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    end = time.monotonic() + timeout
    for _ in range(int(timeout / 0.02) + 1):
        if fn():
            return
        if time.monotonic() > end:
            break
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def drive_all(probes: list[Probe]) -> list[ProbeResult]:
    """A miniature master loop: every probe at once in one select(), as the module documents."""
    results: dict[int, ProbeResult] = {}
    now = time.monotonic()
    for i, probe in enumerate(probes):
        early = probe.start(now)
        if early is not None:
            results[i] = early
    hard_stop = now + DEADLINE
    for _ in range(10_000):
        pending = [i for i in range(len(probes)) if i not in results]
        if not pending:
            break
        now = time.monotonic()
        assert now < hard_stop, "probes did not finish"
        rlist: list[int] = []
        wlist: list[int] = []
        owner: dict[int, int] = {}
        wake = min(probes[i].deadline for i in pending)
        for i in pending:
            fd = probes[i].fileno()
            if fd is not None:
                (wlist if probes[i].wants_write() else rlist).append(fd)
                owner[fd] = i
            interval = probes[i].poll_interval
            if interval is not None:
                wake = min(wake, now + interval)
        ready_r, ready_w, _ = select.select(rlist, wlist, [], max(0.0, wake - now))
        now = time.monotonic()
        ready = {owner[fd] for fd in ready_r + ready_w}
        for i in pending:
            probe = probes[i]
            result = probe.on_ready(now) if i in ready else None
            if result is None and probe.poll_interval is not None:
                result = probe.poll(now)
            if result is None and now >= probe.deadline:
                result = probe.on_timeout(now)
            if result is not None:
                probe.close()
                results[i] = result
    for probe in probes:
        probe.close()
    return [results[i] for i in range(len(probes))]


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """Accepts connections in the kernel (backlog) but never reads or answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock
    sock.close()


def port_of(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def closed_port() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = port_of(sock)
    sock.close()  # bound, never listened, closed: connecting is refused
    return port


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = {"/ok": 200, "/fail": 500, "/moved": 302}.get(self.path.split("?")[0], 404)
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(DEADLINE)


def one_shot_server(answer: bytes) -> tuple[int, threading.Thread, socket.socket]:
    """Accepts one connection, reads the request, sends `answer`, closes."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    sock.settimeout(DEADLINE)

    def serve() -> None:
        conn, _ = sock.accept()
        with conn:
            request = b""
            # Read the whole request first: closing with unread data would send a RST.
            for _ in range(100):
                chunk = conn.recv(4096)
                request += chunk
                if not chunk or b"\r\n\r\n" in request:
                    break
            conn.sendall(answer)

    thread = threading.Thread(target=serve)
    thread.start()
    return port_of(sock), thread, sock


# --- tcp ---------------------------------------------------------------------------------


def test_tcp_probe_is_healthy_when_the_port_accepts(listener: socket.socket) -> None:
    result = wait_for(TcpProbe(port_of(listener), timeout=DEADLINE))
    assert result.healthy, result.message
    assert result.duration >= 0.0


def test_tcp_probe_of_a_closed_port_is_refused_and_unhealthy(closed_port: int) -> None:
    result = wait_for(TcpProbe(closed_port, timeout=DEADLINE))
    assert not result.healthy
    assert "refused" in result.message.lower()


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full: the kernel drops further SYNs, connects hang."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        filler.setblocking(False)
        filler.connect_ex(sock.getsockname())
        fillers.append(filler)
    yield port_of(sock)
    for filler in fillers:
        filler.close()
    sock.close()


def test_tcp_probe_times_out_when_the_connect_hangs(full_backlog: int) -> None:
    probe = TcpProbe(full_backlog, timeout=0.3)
    assert probe.start(time.monotonic()) is None
    # Called while the connect is still pending, on_ready must not claim success.
    assert probe.on_ready(time.monotonic()) is None
    probe.close()
    (result,) = drive_all([TcpProbe(full_backlog, timeout=0.3)])
    assert not result.healthy
    assert "timed out" in result.message


def test_tcp_probe_accepts_localhost_as_loopback(listener: socket.socket) -> None:
    probe = TcpProbe(port_of(listener), host="localhost", timeout=DEADLINE)
    assert probe.host == "127.0.0.1"
    assert wait_for(probe).healthy


def test_probes_refuse_host_names_that_would_need_a_blocking_lookup() -> None:
    with pytest.raises(ValueError, match="IP address"):
        TcpProbe(80, host="example.com")
    with pytest.raises(ValueError, match="IP address"):
        HttpProbe("http://example.com/health")
    with pytest.raises(ValueError):
        TcpProbe(0)
    with pytest.raises(ValueError):
        TcpProbe(80, timeout=0)


# --- http --------------------------------------------------------------------------------


def test_http_probe_is_healthy_on_200_and_on_a_redirect(http_port: int) -> None:
    ok = wait_for(HttpProbe(f"http://127.0.0.1:{http_port}/ok", timeout=DEADLINE))
    assert ok.healthy, ok.message
    assert "200" in ok.message
    moved = wait_for(HttpProbe(f"http://localhost:{http_port}/moved?x=1", timeout=DEADLINE))
    assert moved.healthy, moved.message
    assert "302" in moved.message


def test_http_probe_is_unhealthy_on_500_and_404(http_port: int) -> None:
    fail = wait_for(HttpProbe(f"http://127.0.0.1:{http_port}/fail", timeout=DEADLINE))
    assert not fail.healthy
    assert "500" in fail.message
    missing = wait_for(HttpProbe(f"http://127.0.0.1:{http_port}/nope", timeout=DEADLINE))
    assert not missing.healthy
    assert "404" in missing.message


def test_http_probe_times_out_when_the_server_accepts_but_never_answers(
    listener: socket.socket,
) -> None:
    result = wait_for(HttpProbe(f"http://127.0.0.1:{port_of(listener)}/", timeout=0.3))
    assert not result.healthy
    assert "timed out" in result.message


def test_http_probe_of_a_closed_port_is_unhealthy(closed_port: int) -> None:
    result = wait_for(HttpProbe(f"http://127.0.0.1:{closed_port}/", timeout=DEADLINE))
    assert not result.healthy
    assert "refused" in result.message.lower()


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (b"", "closed before a status line"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", "not an HTTP status line"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", "204"),
    ],
)
def test_http_probe_reads_only_the_status_line_of_raw_answers(answer: bytes, expected: str) -> None:
    port, thread, sock = one_shot_server(answer)
    try:
        result = wait_for(HttpProbe(f"http://127.0.0.1:{port}/", timeout=DEADLINE))
    finally:
        thread.join(DEADLINE)
        sock.close()
    assert expected in result.message
    assert result.healthy == answer.startswith(b"HTTP/1.1 2")


def test_http_probe_rejects_anything_but_plain_http() -> None:
    with pytest.raises(ValueError, match="http://"):
        HttpProbe("https://127.0.0.1/health")
    with pytest.raises(ValueError):
        HttpProbe("http:///health")


# --- command -----------------------------------------------------------------------------


@pytest.mark.parametrize("use_pidfd", [True, False], ids=["pidfd", "polling"])
def test_command_probe_exit_status_decides_health(use_pidfd: bool) -> None:
    ok = CommandProbe(["true"], timeout=DEADLINE, use_pidfd=use_pidfd)
    bad = CommandProbe(["false"], timeout=DEADLINE, use_pidfd=use_pidfd)
    ok_result, bad_result = drive_all([ok, bad])
    assert ok_result.healthy
    assert ok.fileno() is None  # a finished probe has released its pidfd
    assert (ok.poll_interval is None) == use_pidfd
    assert not bad_result.healthy
    assert bad_result.message == "exit status 1"


@pytest.mark.parametrize("use_pidfd", [True, False], ids=["pidfd", "polling"])
def test_command_probe_that_overruns_is_killed_and_leaves_no_zombie(use_pidfd: bool) -> None:
    probe = CommandProbe(["sleep", "10"], timeout=0.3, use_pidfd=use_pidfd)
    (result,) = drive_all([probe])
    assert not result.healthy
    assert "timed out" in result.message
    pid = probe.pid
    assert pid is not None
    # The master calls reap_orphans() when SIGCHLD wakes it; emulate those wake-ups.
    wait_until(lambda: reap_orphans() == 0 and not psutil.pid_exists(pid), "sleep to be reaped")


def test_command_probe_kills_what_the_command_left_in_the_background(tmp_path: Path) -> None:
    pidfile = tmp_path / "bg.pid"
    script = f"sleep 30 & echo $! > {pidfile}; exit 0"
    result = wait_for(CommandProbe(["sh", "-c", script], timeout=DEADLINE))
    assert result.healthy, result.message
    bg = int(pidfile.read_text())

    def gone() -> bool:
        try:
            return psutil.Process(bg).status() == psutil.STATUS_ZOMBIE  # init reaps it later
        except psutil.NoSuchProcess:
            return True

    wait_until(gone, "the background sleep to be killed")


def test_command_probe_that_cannot_start_fails_at_once() -> None:
    probe = CommandProbe(["/nonexistent/healthcheck"], timeout=DEADLINE)
    result = probe.start(time.monotonic())
    assert result is not None
    assert not result.healthy
    assert "cannot run" in result.message
    assert probe.fileno() is None
    probe.close()


def test_closing_a_running_command_probe_kills_it() -> None:
    probe = CommandProbe(["sleep", "30"], timeout=DEADLINE)
    assert probe.start(time.monotonic()) is None
    pid = probe.pid
    assert pid is not None
    probe.close()
    probe.close()  # idempotent
    wait_until(lambda: reap_orphans() == 0 and not psutil.pid_exists(pid), "sleep to be reaped")


def test_command_probe_rejects_an_empty_argv() -> None:
    with pytest.raises(ValueError):
        CommandProbe([])


# --- all kinds at once, through make_probe -------------------------------------------------


def test_one_select_loop_drives_every_kind_of_probe_concurrently(
    listener: socket.socket, http_port: int, closed_port: int
) -> None:
    silent = HttpProbe(f"http://127.0.0.1:{port_of(listener)}/", timeout=1.0)
    probes = [
        make_probe(HealthCheck(tcp=http_port, timeout=DEADLINE)),
        make_probe(HealthCheck(http=f"http://127.0.0.1:{http_port}/ok", timeout=DEADLINE)),
        make_probe(HealthCheck(http=f"http://127.0.0.1:{http_port}/fail", timeout=DEADLINE)),
        make_probe(HealthCheck(tcp=closed_port, timeout=DEADLINE)),
        make_probe(HealthCheck(command=("true",), timeout=DEADLINE)),
        make_probe(HealthCheck(command=("sleep", "10"), timeout=1.0)),
        silent,
    ]
    assert [type(p) for p in probes[:6]] == [
        TcpProbe,
        HttpProbe,
        HttpProbe,
        TcpProbe,
        CommandProbe,
        CommandProbe,
    ]
    results = drive_all(probes)
    assert [r.healthy for r in results] == [True, True, False, False, True, False, False]
    assert "timed out" in results[5].message
    assert "timed out" in results[6].message
    wait_until(lambda: reap_orphans() == 0, "the killed sleep to be reaped")


def test_make_probe_needs_exactly_one_kind() -> None:
    with pytest.raises(ValueError):
        make_probe(HealthCheck())
    with pytest.raises(ValueError):
        make_probe(HealthCheck(tcp=80, command=("true",)))


def test_a_finished_probe_reports_the_same_result_again() -> None:
    probe = CommandProbe(["true"], timeout=DEADLINE)
    first = wait_for(probe)
    assert probe.on_ready(time.monotonic()) is first
    assert probe.on_timeout(time.monotonic()) is first


# --- HealthTracker -------------------------------------------------------------------------

OK = ProbeResult(True, "ok", 0.01)
BAD = ProbeResult(False, "connect: Connection refused", 0.01)


def test_first_probe_waits_for_the_start_period_then_follows_the_interval() -> None:
    tracker = HealthTracker(HealthCheck(tcp=1, interval=30, start_period=5), started_at=100.0)
    assert tracker.next_probe_due() == 105.0
    tracker.record(OK, now=105.5)
    assert tracker.next_probe_due() == 135.5
    assert tracker.status == "healthy"


def test_tracker_asks_for_a_restart_after_consecutive_failures_only() -> None:
    tracker = HealthTracker(HealthCheck(tcp=1, failures=3), started_at=0.0)
    assert [tracker.record(BAD, now=t) for t in (1.0, 2.0)] == [False, False]
    assert tracker.record(OK, now=3.0) is False  # a success breaks the streak
    assert [tracker.record(BAD, now=t) for t in (4.0, 5.0, 6.0)] == [False, False, True]
    assert tracker.consecutive_failures == 0  # the count starts over after the verdict
    assert tracker.status == "unhealthy"


def test_tracker_dict_is_json_ready() -> None:
    tracker = HealthTracker(HealthCheck(tcp=1), started_at=0.0)
    assert json.loads(json.dumps(tracker.to_dict()))["status"] == "starting"
    tracker.record(BAD, now=1.0)
    data = json.loads(json.dumps(tracker.to_dict()))
    assert data == {
        "status": "unhealthy",
        "consecutive_failures": 1,
        "failures_threshold": 3,
        "last_message": BAD.message,
        "last_duration": 0.01,
    }
    assert ProbeResult(True, "x", 0.5).to_dict()["healthy"] is True
