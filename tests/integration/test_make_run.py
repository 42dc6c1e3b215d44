"""`make run`, as a newcomer types it: the daemon on examples/ with the dashboard on 127.0.0.1.

The README's first command, run for real: `make run` in a copy of the checkout (its Makefile,
setup.cfg, pyproject.toml and examples/, the checkout's installed .venv linked in, so nothing
is reinstalled and the checkout's own var/ is never touched). What a newcomer then sees is
asserted: the printed dashboard URL and token, the login page, a login with that token, their
own device on the dashboard and in the API with the examples' workloads (the service
running), the device's client API; then Ctrl-C stops everything it started.

The example config binds the fixed ports 8080 and 9100 (the README's URLs). When another
program holds one, the test skips, and CI (MCTL_REQUIRE_ALL=1) turns that skip into a failure.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.integration.harness import REPO, wait_for

DASHBOARD = "http://127.0.0.1:8080"
CLIENT_API = "http://127.0.0.1:9100"
EXAMPLE_WORKLOADS = {"hello_agent", "data_collector", "counter", "ticker"}


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _checkout_copy(dest: Path) -> Path:
    """What `make run` reads, copied with its times (so make finds the install up to date)."""
    dest.mkdir()
    for name in ("Makefile", "setup.cfg", "pyproject.toml"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "examples", dest / "examples", copy_function=shutil.copy2,
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    (dest / ".venv").symlink_to(REPO / ".venv")
    return dest


def _processes_under(root: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        try:
            text = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["cwd"] or "")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if str(root) in text and proc.pid != os.getpid():
            found.append(proc)
    return found


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    busy = [p for p in (8080, 9100) if not _port_free(p)]
    if busy:
        pytest.skip(f"port(s) {busy} in use: `make run` needs them")
    root = _checkout_copy(tmp_path / "checkout")
    stamp = next((REPO / ".venv").glob(".installed-*"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCTL_")}
    # -o: the install stamp is taken as made whatever the copy's times say. Make names it as
    # the Makefile does (relative). A run that would still install would do so into the
    # checkout's own .venv, pointing it at this copy: check with -n first, never let it.
    command = ["make", "--no-print-directory", "-o", f".venv/{stamp.name}", "run"]
    plan = subprocess.run(
        [*command[:-1], "-n", "run"], cwd=root, env=env, capture_output=True, text=True, check=True
    )
    assert "pip" not in plan.stdout, f"`make run` would reinstall: {plan.stdout}"
    proc = subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        yield proc, root
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for leftover in _processes_under(root):
            leftover.kill()


def _read_token(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        found = re.search(r"Dashboard: (http://\S+) .* token: (\S+)", line)
        if found:
            assert found.group(1) == f"{DASHBOARD}/"
            return found.group(2)
    raise AssertionError(f"`make run` printed no dashboard line: {''.join(seen)!r}")


def _get_json(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as reply:
        return json.loads(reply.read())


def test_make_run_brings_up_the_daemon_and_the_dashboard(
    make_run: tuple[subprocess.Popen[str], Path],
) -> None:
    proc, root = make_run
    token = _read_token(proc)
    device_token = (root / "var" / "this-device.token").read_text().strip()

    # The login page, before any session: a page, not a JSON 401.
    def login_page() -> str | None:
        try:
            with urllib.request.urlopen(f"{DASHBOARD}/login", timeout=5) as reply:
                return str(reply.read().decode())
        except OSError:
            return None

    cookies = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
    page = wait_for(login_page, timeout=60, what="the dashboard's login page")
    assert "<form" in page
    with browser.open(f"{DASHBOARD}/login", timeout=5) as reply:
        csrf = re.search(r'name="csrf" value="([^"]+)"', reply.read().decode())
    assert csrf is not None
    form = urllib.parse.urlencode({"csrf": csrf.group(1), "token": token}).encode()
    with browser.open(f"{DASHBOARD}/login", data=form, timeout=5) as reply:
        assert reply.status == 200 and reply.url == f"{DASHBOARD}/"  # redirected to the fleet

    # Their own device, online, with the examples' workloads, once its first heartbeat is in.
    def device() -> dict[str, Any] | None:
        try:
            body: dict[str, Any] = _get_json(f"{DASHBOARD}/api/v1/clients/this-device", token)
        except (OSError, urllib.error.HTTPError):
            return None
        return body if body.get("status") == "online" else None

    wait_for(device, timeout=60, what="this-device online on the central")
    workloads = _get_json(f"{DASHBOARD}/api/v1/clients/this-device/workloads", token)
    states = {w["name"]: w["state"] for w in workloads["workloads"]}
    assert set(states) >= EXAMPLE_WORKLOADS, states
    assert states["ticker"] == "RUNNING", states  # the example service
    with browser.open(f"{DASHBOARD}/", timeout=5) as reply:
        assert "this-device" in reply.read().decode()
    health = _get_json(f"{CLIENT_API}/api/v1/health", device_token)
    assert health, health

    # Ctrl-C in the terminal: make and the daemon stop, and nothing they started is left.
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    wait_for(lambda: not _processes_under(root), timeout=30, what="nothing left running")
    assert _port_free(8080) and _port_free(9100)
