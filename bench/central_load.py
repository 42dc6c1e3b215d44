"""Load benchmark of the central API: N simulated clients heartbeating against a real central.

Starts the real `@central-api` service (mastercontrol.api.central_service.main) in its own
process on 127.0.0.1 with an inventory of N clients (distinct names and tokens), then runs
load generator processes that send each client's ~2 KB heartbeat every 30 s (±10 % jitter, the
first one spread over the first interval), one new connection per heartbeat as the sender
does. Reports sustained heartbeats/s, p50/p99 latency, errors, the central's CPU and RSS and
the fleet DB's growth per hour. Then a reconnect storm: the central is SIGKILLed and
restarted and every client sends at once; reported: how long until all were accepted, errors,
p99, and the steady rate afterwards. Bounded in count and time; 127.0.0.1 only.

    .venv/bin/python bench/central_load.py --clients 1000 10000 50000 --seconds 60

Appends nothing by itself: paste the printed Markdown table into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
OPERATOR = "bench-operator-token"
INTERVAL = 30.0
GENERATORS = 2  # load generator processes (the machine has 2 cores; the central needs one)
CONNECT_TIMEOUT = 10.0


def token_of(i: int) -> str:
    return f"tok-{i:06d}-{'x' * 24}"


def name_of(i: int) -> str:
    return f"pi-{i:06d}"


def body_of(i: int) -> bytes:
    """A realistic heartbeat of ~2 KB: 8 workloads and a full system section."""
    workloads = [
        {"name": f"workload_{w}", "state": "RUNNING" if w else "SCHEDULED", "pid": 1000 + w,
         "version": "1.2.0", "runs": 42 + w, "restarts": w % 3, "internal": False,
         "last_exit": {"code": 0, "signal": None, "reason": "exit", "at": 1_700_000_000.0}}
        for w in range(8)
    ]  # fmt: skip
    system = {
        "cpu_percent": random.uniform(1, 90), "load": [0.42, 0.37, 0.30],
        "memory": {"total_bytes": 1_000_000_000, "available_bytes": 600_000_000,
                   "used_percent": random.uniform(10, 90)},
        "disk": {"state": {"path": "/var/lib/mastercontrol", "total_bytes": 32_000_000_000,
                           "free_bytes": 20_000_000_000, "used_percent": 37.5},
                 "log": {"path": "/var/log/mastercontrol", "total_bytes": 32_000_000_000,
                         "free_bytes": 20_000_000_000, "used_percent": 37.5}},
        "uptime_seconds": 123456.0, "temperature_c": random.uniform(40, 70),
        "throttling": {"under_voltage_now": False, "throttled_now": False, "raw": "0x0"},
    }  # fmt: skip
    hb = {"client_name": name_of(i), "sent_at": time.time(), "daemon_version": "0.9.0",
          "release": "20261201-abcdef", "api_url": "http://127.0.0.1:9100",
          "master": {"reachable": True, "pid": 321, "uptime_seconds": 1000.0},
          "workloads": workloads, "system": system}  # fmt: skip
    return json.dumps(hb).encode()


def request_bytes(port: int, i: int) -> bytes:
    body = body_of(i)
    head = (
        f"POST /api/v1/heartbeat HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token_of(i)}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def one(port: int, i: int, stats: dict[str, Any]) -> None:
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), CONNECT_TIMEOUT
        )
        writer.write(request_bytes(port, i))
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 30)
        await asyncio.wait_for(reader.read(), 30)
        writer.close()
        code = int(status_line.split()[1]) if status_line else 0
    except (OSError, TimeoutError, ValueError, IndexError):
        code = 0
    stats["latencies"].append(time.monotonic() - started)
    if code == 200:
        stats["ok"] += 1
    else:
        stats["errors"] += 1


async def steady(port: int, ids: list[int], seconds: float, seed: int) -> dict[str, Any]:
    """Each client in `ids` beats every INTERVAL ±10 %, first beats spread over one interval."""
    rng = random.Random(seed)
    stats: dict[str, Any] = {"ok": 0, "errors": 0, "latencies": []}
    start = time.monotonic()
    schedule = [(start + rng.uniform(0, INTERVAL), i) for i in ids]
    schedule.sort()
    pending: set[asyncio.Task[None]] = set()
    import heapq

    heapq.heapify(schedule)
    end = start + seconds
    while schedule and schedule[0][0] < end:
        due, i = heapq.heappop(schedule)
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(port, i, stats))
        pending.add(task)
        task.add_done_callback(pending.discard)
        heapq.heappush(schedule, (due + INTERVAL * rng.uniform(0.9, 1.1), i))
    if pending:
        await asyncio.wait(pending, timeout=60)
    return stats


async def storm(port: int, ids: list[int]) -> dict[str, Any]:
    """Every client at once (bounded concurrency per generator so the generator's own fds hold)."""
    stats: dict[str, Any] = {"ok": 0, "errors": 0, "latencies": []}
    gate = asyncio.Semaphore(2000)

    async def limited(i: int) -> None:
        async with gate:
            await one(port, i, stats)

    await asyncio.gather(*(limited(i) for i in ids))
    return stats


def generator(kind: str, port: int, ids: list[int], seconds: float, seed: int, out: Any) -> None:
    if kind == "steady":
        out.put(asyncio.run(steady(port, ids, seconds, seed)))
    else:
        out.put(asyncio.run(storm(port, ids)))


def run_generators(kind: str, port: int, n: int, seconds: float) -> dict[str, Any]:
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=generator, args=(kind, port, list(range(g, n, GENERATORS)), seconds, g, out)
        )
        for g in range(GENERATORS)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 300) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    merged: dict[str, Any] = {"ok": 0, "errors": 0, "latencies": []}
    for r in results:
        merged["ok"] += r["ok"]
        merged["errors"] += r["errors"]
        merged["latencies"] += r["latencies"]
    merged["latencies"].sort()
    return merged


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


class Central:
    def __init__(self, root: Path, n: int) -> None:
        self.root = root
        self.config = root / "config"
        self.state = root / "state"
        self.config.mkdir(parents=True)
        self.state.mkdir()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        settings = {"central": {"enabled": True, "host": "127.0.0.1", "port": self.port,
                                "api_token": OPERATOR}}  # fmt: skip
        (self.config / "daemon.yaml").write_text(json.dumps(settings))
        clients = [{"name": name_of(i), "host": "127.0.0.1", "api_token": token_of(i)}
                   for i in range(n)]  # fmt: skip
        (self.config / "inventory.yaml").write_text(json.dumps({"clients": clients}))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        code = (
            "import sys; from mastercontrol.api.central_service import main; "
            "main(config_dir=sys.argv[1], state_dir=sys.argv[2])"
        )
        started = time.monotonic()
        with open(self.root / "central.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code, str(self.config), str(self.state)],
                cwd=REPO, stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"central exited; see {self.root / 'central.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return time.monotonic() - started
            except OSError:
                time.sleep(0.1)
        raise SystemExit("central did not start within 300 s")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def db_bytes(self) -> int:
        return sum(
            os.stat(p).st_size for p in self.state.glob("fleet.db*") if p.name != "fleet.db-shm"
        )

    def history_bytes_per_sample(self) -> float:
        """Bytes one history sample costs (table + indexes), from sqlite's own page stats."""
        conn = sqlite3.connect(self.state / "fleet.db")
        try:
            rows = conn.execute("SELECT COUNT(*) FROM history").fetchone()[0]
            size = conn.execute(
                "SELECT SUM(pgsize) FROM dbstat WHERE name IN "
                "('history', 'history_client_at', 'history_at')"
            ).fetchone()[0]
        finally:
            conn.close()
        return float(size or 0) / rows if rows else float("nan")


def measure(n: int, seconds: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    root = Path(tempfile.mkdtemp(prefix=f"central-load-{n}-"))
    central = Central(root, n)
    try:
        startup = central.start()
        assert central.proc is not None
        proc = psutil.Process(central.proc.pid)
        cpu0, t0 = proc.cpu_times(), time.monotonic()
        stats = run_generators("steady", central.port, n, seconds)
        wall = time.monotonic() - t0
        cpu1 = proc.cpu_times()
        cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall * 100
        rss = proc.memory_info().rss / 2**20
        time.sleep(6)  # one flush interval: the DB holds the run
        # Client rows are updated in place; what grows is the history: one sample per client
        # per history_sample_seconds (300 s by default) until downsampling (after 24 h).
        per_sample = central.history_bytes_per_sample()
        growth = n * (3600 / 300) * per_sample / 2**20
        db_after = central.db_bytes()
        rows.append({
            "N": n, "phase": "steady", "offered/s": n / INTERVAL,
            "ok/s": stats["ok"] / wall, "errors": stats["errors"],
            "p50 ms": pct(stats["latencies"], 0.5) * 1000,
            "p99 ms": pct(stats["latencies"], 0.99) * 1000,
            "CPU %": cpu, "RSS MiB": rss, "DB MiB/h": growth, "start s": startup,
            "DB MiB": db_after / 2**20, "B/sample": per_sample,
        })  # fmt: skip
        # Reconnect storm: the central dies, comes back, and every client beats at once.
        central.kill()
        restart = central.start()
        proc = psutil.Process(central.proc.pid)
        t0 = time.monotonic()
        burst = run_generators("storm", central.port, n, 0)
        burst_wall = time.monotonic() - t0
        rows.append({
            "N": n, "phase": "storm", "offered/s": float("nan"),
            "ok/s": burst["ok"] / burst_wall, "errors": burst["errors"],
            "p50 ms": pct(burst["latencies"], 0.5) * 1000,
            "p99 ms": pct(burst["latencies"], 0.99) * 1000,
            "CPU %": float("nan"), "RSS MiB": proc.memory_info().rss / 2**20,
            "DB MiB/h": float("nan"), "start s": restart, "all in s": burst_wall,
        })  # fmt: skip
        after = run_generators("steady", central.port, n, min(seconds, 30))
        rows.append({
            "N": n, "phase": "after storm", "offered/s": n / INTERVAL,
            "ok/s": after["ok"] / min(seconds, 30), "errors": after["errors"],
            "p50 ms": pct(after["latencies"], 0.5) * 1000,
            "p99 ms": pct(after["latencies"], 0.99) * 1000,
            "CPU %": float("nan"), "RSS MiB": proc.memory_info().rss / 2**20,
            "DB MiB/h": float("nan"), "start s": float("nan"),
        })  # fmt: skip
    finally:
        central.stop()
        shutil.rmtree(root, ignore_errors=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    cols = ["N", "phase", "offered/s", "ok/s", "errors", "p50 ms", "p99 ms", "CPU %",
            "RSS MiB", "DB MiB", "B/sample", "DB MiB/h", "start s", "all in s"]  # fmt: skip

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if v != v else f"{v:,.1f}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--seconds", type=float, default=60.0, help="steady phase per N")
    args = parser.parse_args()
    if max(args.clients) > 100_000 or args.seconds > 600:
        raise SystemExit("bounded: at most 100,000 clients and 600 s per phase")
    rows: list[dict[str, Any]] = []
    for n in args.clients:
        rows += measure(n, args.seconds)
        print(table(rows[-3:]), flush=True)
    print()
    print(f"Command: `.venv/bin/python bench/central_load.py --clients "
          f"{' '.join(map(str, args.clients))} --seconds {args.seconds:g}`")  # fmt: skip
    print(f"Date: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}; nproc "
          f"{os.cpu_count()}; load at end {os.getloadavg()}")  # fmt: skip
    print(table(rows))


if __name__ == "__main__":
    main()
