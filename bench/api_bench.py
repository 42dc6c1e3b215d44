"""Client API throughput and memory: `GET /api/v1/workloads` with 50 workloads.

Starts a real mastercontrold with N idle workloads (bench/drivers.py), then the client API as
the master would run it (`mastercontrol.api.client_service.main(**params)`, Waitress on
127.0.0.1 and a free port), drives it for a bounded time from a few keep-alive HTTP clients
and reports requests/s and latency (`workloads`, then `health` and `/metrics` for scale) and
the API child's memory. Only 127.0.0.1 is ever used.

    .venv/bin/python bench/api_bench.py [--workloads 50] [--seconds 10] [--clients 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` and the workloads importable
    sys.path.insert(0, str(ROOT))

from bench import drivers  # noqa: E402

MAX_REQUESTS_PER_CLIENT = 200_000  # the loop is bounded by count as well as by time


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(check: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.1)
    raise SystemExit(f"timed out after {timeout:g}s waiting for {what}")


def get(conn: http.client.HTTPConnection, path: str, token: str) -> int:
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    resp.read()
    return resp.status


def load(port: int, path: str, token: str, seconds: float, clients: int) -> dict[str, Any]:
    """`clients` threads, each one keep-alive connection, until `seconds` have passed."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    deadline = time.monotonic() + seconds

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            for _ in range(MAX_REQUESTS_PER_CLIENT):
                if time.monotonic() >= deadline:
                    break
                t0 = time.perf_counter()
                try:
                    ok = get(conn, path, token) == 200
                except (OSError, http.client.HTTPException):
                    ok = False
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                latencies[i].append(time.perf_counter() - t0)
                errors[i] += not ok
        finally:
            conn.close()

    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    flat = sorted(x for lat in latencies for x in lat)
    return {
        "path": path,
        "requests": len(flat),
        "errors": sum(errors),
        "seconds": round(elapsed, 2),
        "requests_per_second": round(len(flat) / elapsed, 1),
        "latency_median_ms": round(statistics.median(flat) * 1000, 2) if flat else None,
        "latency_p95_ms": round(flat[int(len(flat) * 0.95) - 1] * 1000, 2) if flat else None,
    }


def run(workloads: int, seconds: float, clients: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="mc-api-bench-"))
    driver = drivers.MasterControl(workdir)
    token = secrets.token_urlsafe(24)
    port = free_port()
    api: subprocess.Popen[bytes] | None = None
    try:
        (workdir / "conf").mkdir(parents=True, exist_ok=True)
        fleet = {"api_port": port, "api_token": token}
        (workdir / "conf" / "daemon.yaml").write_text(json.dumps({"fleet": fleet}) + "\n")
        driver.start([drivers.Spec(f"w{i:03d}", "idle") for i in range(workloads)])
        wait_for(
            lambda: sum(s == "RUNNING" for s, _ in driver.states().values()) == workloads,
            60,
            f"{workloads} workloads to run",
        )
        params = {
            "config_dir": str(workdir / "conf"),
            "socket_path": str(workdir / "mc.sock"),
            "state_dir": str(workdir),
            "log_dir": str(workdir / "log"),
            "section_digest": "bench",
        }
        code = "import sys\nfrom mastercontrol.api.client_service import main\n"
        code += f"sys.exit(main(**{params!r}))\n"
        log = (workdir / "client-api.log").open("ab")
        api = subprocess.Popen(
            [sys.executable, "-c", code], cwd=drivers.ROOT, stdin=subprocess.DEVNULL,
            stdout=log, stderr=log,
        )  # fmt: skip
        log.close()

        def answers() -> bool:
            try:
                return get(http.client.HTTPConnection("127.0.0.1", port, timeout=5),
                           "/api/v1/health", token) == 200  # fmt: skip
            except OSError:
                return False

        wait_for(answers, 30, "the client API")
        proc = psutil.Process(api.pid)
        rss_idle = proc.memory_info().rss
        load(port, "/api/v1/workloads", token, 1.0, 1)  # warm-up
        results = [
            load(port, "/api/v1/workloads", token, seconds, clients),
            load(port, "/api/v1/health", token, seconds / 2, clients),
            load(port, "/metrics", token, seconds / 2, clients),  # list + one status each
        ]
        mem = proc.memory_full_info()
        return {
            "workloads": workloads,
            "clients": clients,
            "api_threads": proc.num_threads(),
            "api_rss_idle_mib": round(rss_idle / 2**20, 1),
            "api_rss_after_mib": round(mem.rss / 2**20, 1),
            "api_uss_after_mib": round(mem.uss / 2**20, 1),
            "api_cpu_seconds": round(sum(proc.cpu_times()[:2]), 2),
            "master_cpu_seconds": round(sum(psutil.Process(driver.master_pid).cpu_times()[:2]), 2),
            "load_average": [round(x, 2) for x in psutil.getloadavg()],
            "results": results,
        }
    finally:
        if api is not None and api.poll() is None:
            api.terminate()
            try:
                api.wait(10)
            except subprocess.TimeoutExpired:
                api.kill()
        driver.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workloads", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args(argv)
    report = run(args.workloads, args.seconds, args.clients)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
