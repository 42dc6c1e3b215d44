"""Load benchmark of the central API: N simulated clients heartbeating against a real central.

Starts the real `@central-api` service (mastercontrol.api.central_service.main) in its own
process on 127.0.0.1 with an inventory of N clients (distinct names and tokens), then runs
load generator processes (bench/central_loadgen.py: raw non-blocking sockets in one epoll loop
each, every request's bytes built before the clock starts) that send each client's ~2 KB
heartbeat every 30 s (±10 % jitter, the first one spread over the first interval), one new
connection per heartbeat as the sender does. Reports sustained heartbeats/s, p50/p99 latency,
errors, the central's CPU and RSS, the generators' own CPU, and the fleet DB's growth per hour.
Then a reconnect storm: the central is SIGKILLed and restarted and every client sends at once;
a client whose heartbeat failed (refused, reset, timed out, non-200) tries again as the
heartbeat sender would, one interval later (a 503's Retry-After sooner). Reported: how long
until every client was accepted, the failed tries, and `lost`: clients the restarted central's
memory never recorded (GET /api/v1/clients, last_seen after the restart) when the storm phase
ended. Then the steady rate again. With `--intake-workers N` (several: each in turn) the
central runs with `central.intake_workers: N`; its CPU and RSS are then the central process's
plus all its workers' (`owner CPU %` is the central process's alone), and `ms CPU/hb` is the
whole central's CPU per accepted heartbeat. Bounded in count and time; 127.0.0.1 only.

    .venv/bin/python bench/central_load.py --clients 1000 10000 50000 --seconds 60
    .venv/bin/python bench/central_load.py --clients 20000 --intake-workers 0 1 2 --steady-only

Appends nothing by itself: paste the printed Markdown table into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
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
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `bench` importable
    sys.path.insert(0, str(REPO))

from bench import central_loadgen  # noqa: E402

OPERATOR = "bench-operator-token"
INTERVAL = 30.0
GENERATORS = 2  # load generator processes (the machine has 2 cores; the central needs one)
STORM_BOUND = 3 * 30.0 + 60  # the storm phase: every client retried until in, at most this


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


def generator(kind: str, port: int, ids: list[int], seconds: float, seed: int, out: Any) -> None:
    requests = {i: request_bytes(port, i) for i in ids}  # built once, before the clock starts
    stats = central_loadgen.run(
        port, requests, interval=INTERVAL, seconds=seconds, seed=seed, storm=kind == "storm",
        storm_bound=STORM_BOUND,
    )  # fmt: skip
    out.put(stats.as_dict())


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
    results = [out.get(timeout=max(seconds, STORM_BOUND) + 300) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    merged: dict[str, Any] = {"ok": 0, "errors": 0, "retried": 0, "latencies": [],
                              "by_kind": Counter(), "accepted": 0,
                              "cpu_seconds": 0.0}  # fmt: skip
    for r in results:
        for key in ("ok", "errors", "retried", "latencies", "cpu_seconds"):
            merged[key] += r[key]
        merged["by_kind"].update(r["by_kind"])
        merged["accepted"] += len(r["accepted"])
    merged["latencies"].sort()
    return merged


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


class Central:
    def __init__(self, root: Path, n: int, threads: int | None = None, workers: int = 0) -> None:
        self.root = root
        self.threads = threads  # None: the service's own CENTRAL_TUNING
        self.workers = workers  # central.intake_workers
        self.config = root / "config"
        self.state = root / "state"
        self.config.mkdir(parents=True)
        self.state.mkdir()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        settings = {"central": {"enabled": True, "host": "127.0.0.1", "port": self.port,
                                "api_token": OPERATOR, "intake_workers": workers}}  # fmt: skip
        (self.config / "daemon.yaml").write_text(json.dumps(settings))
        clients = [{"name": name_of(i), "host": "127.0.0.1", "api_token": token_of(i)}
                   for i in range(n)]  # fmt: skip
        (self.config / "inventory.yaml").write_text(json.dumps({"clients": clients}))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        code = (
            "import sys; from mastercontrol.api import central_service as cs; "
            + (f"cs.CENTRAL_TUNING['threads'] = {self.threads}; " if self.threads else "")
            + "cs.main(config_dir=sys.argv[1], state_dir=sys.argv[2])"
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
            # An HTTP answer, not a connect: with intake workers the central process listens
            # at once, and its workers start serving a moment later.
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{self.port}/api/v1/fleet",
                    headers={"Authorization": f"Bearer {OPERATOR}"},
                )
                with urllib.request.urlopen(req, timeout=5) as reply:
                    if reply.status == 200 and self.serving():
                        return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("central did not start within 300 s")

    def serving(self) -> bool:
        """Every intake worker is past its start-up (its 8 Waitress threads are up)."""
        workers = self.tree()[1:]
        return len(workers) == self.workers and all(p.num_threads() >= 8 for p in workers)

    def tree(self) -> list[psutil.Process]:
        """The central process, then its intake workers."""
        assert self.proc is not None
        central = psutil.Process(self.proc.pid)
        return [central, *central.children()]

    def kill(self) -> None:
        """SIGKILL the central process; its workers follow it (PR_SET_PDEATHSIG): wait for
        them too, or the restarted central finds the port still taken."""
        assert self.proc is not None
        workers = self.tree()[1:]
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        psutil.wait_procs(workers, timeout=30)

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


def recorded_since(port: int, since: float) -> int:
    """How many clients the central's memory says it heard from at or after `since` (wall)."""
    seen, offset = 0, 0
    while True:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/clients?limit=1000&offset={offset}",
            headers={"Authorization": f"Bearer {OPERATOR}"},
        )
        with urllib.request.urlopen(req, timeout=60) as reply:
            page = json.load(reply)
        clients = page["clients"]
        seen += sum(1 for c in clients if (c["last_seen"] or 0) >= since)
        offset += len(clients)
        if not clients or offset >= page["total"]:
            return seen


def row(n: int, phase: str, stats: dict[str, Any], wall: float, **more: Any) -> dict[str, Any]:
    return {
        "N": n, "phase": phase, "ok/s": stats["ok"] / wall, "errors": stats["errors"],
        "p50 ms": pct(stats["latencies"], 0.5) * 1000,
        "p99 ms": pct(stats["latencies"], 0.99) * 1000,
        "gen CPU %": stats["cpu_seconds"] / wall * 100, **more,
    }  # fmt: skip


def cpu_seconds(procs: list[psutil.Process]) -> list[float]:
    """user + system CPU seconds of each process (0 for one that is gone)."""
    out = []
    for p in procs:
        try:
            t = p.cpu_times()
            out.append(t.user + t.system)
        except psutil.Error:
            out.append(0.0)
    return out


def tree_rss(central: Central) -> float:
    return sum(p.memory_info().rss for p in central.tree()) / 2**20


def measure(
    n: int, seconds: float, threads: int | None = None, storm: bool = True, workers: int = 0
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    root = Path(tempfile.mkdtemp(prefix=f"central-load-{n}-"))
    central = Central(root, n, threads, workers)
    try:
        startup = central.start()
        assert central.proc is not None
        tree = central.tree()  # the central process and its workers: all of the central
        load0 = os.getloadavg()[0]
        cpu0, t0 = cpu_seconds(tree), time.monotonic()
        stats = run_generators("steady", central.port, n, seconds)
        wall = time.monotonic() - t0
        cpu1 = cpu_seconds(tree)
        used = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
        cpu = sum(used) / wall * 100
        rss = sum(p.memory_info().rss for p in tree) / 2**20
        time.sleep(6)  # one flush interval: the DB holds the run
        # Client rows are updated in place; what grows is the history: one sample per client
        # per history_sample_seconds (300 s by default) until downsampling (after 24 h).
        per_sample = central.history_bytes_per_sample()
        growth = n * (3600 / 300) * per_sample / 2**20
        rows.append(row(
            n, "steady", stats, wall, **{
                "workers": workers, "offered/s": n / INTERVAL, "CPU %": cpu,
                "owner CPU %": used[0] / wall * 100,
                "ms CPU/hb": sum(used) / stats["ok"] * 1000 if stats["ok"] else float("nan"),
                "RSS MiB": rss, "DB MiB/h": growth,
                "start s": startup, "DB MiB": central.db_bytes() / 2**20,
                "B/sample": per_sample, "load": max(load0, os.getloadavg()[0]),
            },
        ))  # fmt: skip
        if not storm:
            if stats["by_kind"]:
                print(f"N={n} steady: errors by kind {dict(stats['by_kind'])}", flush=True)
            return rows
        # Reconnect storm: the central dies, comes back, and every client beats at once; a
        # refused or failed one is retried as the sender would (one interval later).
        central.kill()
        restart = central.start()
        restarted_at = time.time()
        t0 = time.monotonic()
        burst = run_generators("storm", central.port, n, 0)
        burst_wall = time.monotonic() - t0
        lost = n - recorded_since(central.port, restarted_at)
        rows.append(row(
            n, "storm", burst, burst_wall, **{
                "workers": workers, "RSS MiB": tree_rss(central), "start s": restart,
                "all in s": burst_wall, "retried": burst["retried"], "lost": lost,
                "no 200": n - burst["accepted"],
                "load": os.getloadavg()[0],
            },
        ))  # fmt: skip
        after_wall = min(seconds, 30)
        after = run_generators("steady", central.port, n, after_wall)
        rows.append(row(
            n, "after storm", after, after_wall, **{
                "workers": workers, "offered/s": n / INTERVAL, "RSS MiB": tree_rss(central),
                "load": os.getloadavg()[0],
            },
        ))  # fmt: skip
        for r, s in zip(rows, (stats, burst, after), strict=True):
            if s["by_kind"]:
                print(f"N={n} {r['phase']}: errors by kind {dict(s['by_kind'])}", flush=True)
    finally:
        central.stop()
        shutil.rmtree(root, ignore_errors=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    cols = ["N", "workers", "phase", "offered/s", "ok/s", "errors", "retried", "lost", "no 200",
            "p50 ms", "p99 ms", "CPU %", "owner CPU %", "ms CPU/hb", "gen CPU %", "RSS MiB",
            "DB MiB", "B/sample", "DB MiB/h", "start s", "all in s", "load"]  # fmt: skip

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if v != v else (f"{v:.2f}" if abs(v) < 10 else f"{v:,.1f}")
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--seconds", type=float, default=60.0, help="steady phase per N")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="Waitress threads of the central (default: the service's own)",
    )
    parser.add_argument("--steady-only", action="store_true", help="no storm phases")
    parser.add_argument(
        "--intake-workers", type=int, nargs="+", default=[0], metavar="N",
        help="central.intake_workers, each measured in turn (default: 0, one process)",
    )  # fmt: skip
    args = parser.parse_args()
    if max(args.clients) > 100_000 or args.seconds > 600 or max(args.intake_workers) > 32:
        raise SystemExit("bounded: at most 100,000 clients, 600 s per phase and 32 workers")
    rows: list[dict[str, Any]] = []
    for n in args.clients:
        for workers in args.intake_workers:
            got = measure(n, args.seconds, args.threads, not args.steady_only, workers)
            rows += got
            print(table(got), flush=True)
    print()
    extra = (f" --threads {args.threads}" if args.threads else "") + (
        " --steady-only" if args.steady_only else "") + (
        " --intake-workers " + " ".join(map(str, args.intake_workers))
        if args.intake_workers != [0] else "")  # fmt: skip
    print(f"Command: `.venv/bin/python bench/central_load.py --clients "
          f"{' '.join(map(str, args.clients))} --seconds {args.seconds:g}{extra}`")  # fmt: skip
    print(f"Date: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}; nproc "
          f"{os.cpu_count()}; load at end {os.getloadavg()}")  # fmt: skip
    print(table(rows))


if __name__ == "__main__":
    main()
