"""How long the dashboard's fleet overview takes to render for a large fleet.

Fills a real fleet DB (sqlite file) and the coalescer with N clients (each with a heartbeat:
8 workloads and a full system section, as the sender builds it), mounts the real central app
with its dashboard, logs in through the real login form, and times whole WSGI requests of the
overview (default view, sorted by CPU, a search, a status filter, a late page) in process: the
server-side work of one page, without the network. Prints a Markdown table for
bench/RESULTS.md. `.venv/bin/python bench/dashboard_render.py [--clients N] [--repeat R]`.
Imports the standard library and mastercontrol only.
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `mastercontrol` importable
    sys.path.insert(0, str(ROOT))

from mastercontrol.api.central_app import Central, create_central_app  # noqa: E402
from mastercontrol.fleet.coalescer import Coalescer  # noqa: E402
from mastercontrol.fleet.fleetstore import SqliteFleetStore  # noqa: E402
from mastercontrol.fleet.intake import parse_heartbeat  # noqa: E402
from mastercontrol.fleet.liveness import LivenessRule  # noqa: E402
from mastercontrol.fleet.roster import Roster, RosterEntry  # noqa: E402

TOKEN = "bench-operator-token"
VIEWS = (
    ("default (name, page 1)", "/"),
    ("sorted by CPU, descending", "/?sort=cpu&dir=desc"),
    ("search `pi-07`", "/?q=pi-07"),
    ("status filter (online)", "/?status=online"),
    ("page 50", "/?page=50"),
)


def heartbeat(i: int, now: float) -> dict[str, Any]:
    return {
        "client_name": f"pi-{i:05d}",
        "sent_at": now,
        "daemon_version": "0.1.0",
        "release": f"r{i % 3}",
        "workloads": [
            {
                "name": f"w{j}",
                "state": "FATAL" if (i + j) % 97 == 0 else "RUNNING",
                "pid": 1000 + j,
                "runs": j,
                "restarts": 0,
                "started_at": now - 3600,
                "last_exit": {"reason": "exit", "code": 0},
            }
            for j in range(8)
        ],
        "system": {
            "cpu_percent": (i * 7) % 100,
            "load": [0.5, 0.4, 0.3],
            "memory": {"used_percent": (i * 3) % 100, "total_bytes": 1 << 30},
            "disk": {"state": {"path": "/", "used_percent": 40.0}},
            "temperature_c": 40 + i % 30,
            "throttling": {"under_voltage": i % 50 == 0},
        },
    }


def request(app: Any, path: str, cookie: str = "", form: dict[str, str] | None = None) -> Any:
    path, _, query = path.partition("?")
    body = urlencode(form).encode() if form else b""
    environ = {
        "REQUEST_METHOD": "POST" if form else "GET", "PATH_INFO": path, "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "CONTENT_LENGTH": str(len(body)), "HTTP_COOKIE": cookie,
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
    }  # fmt: skip
    out: dict[str, Any] = {}

    def start(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
        out["status"], out["headers"] = status, headers
        return lambda data: None

    out["body"] = b"".join(app(environ, start))
    return out


def cookies(reply: dict[str, Any]) -> str:
    return "; ".join(v.split(";")[0] for k, v in reply["headers"] if k.lower() == "set-cookie")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        now = time.time()
        store = SqliteFleetStore(Path(tmp) / "fleet.db")
        coalescer = Coalescer(store, LivenessRule(90, 300, started_at=time.monotonic() - 3600))
        entries = [RosterEntry(f"pi-{i:05d}", "127.0.0.1", tags=(f"t{i % 5}",))
                   for i in range(args.clients)]  # fmt: skip
        coalescer.set_inventory(entries)
        for i in range(args.clients):
            coalescer.ingest(parse_heartbeat(heartbeat(i, now)))
        t0 = time.perf_counter()
        coalescer.flush()
        flush_s = time.perf_counter() - t0
        central = Central(coalescer, store, Roster(entries, TOKEN, False), TOKEN)
        app = create_central_app(central)
        login = request(app, "/login")
        csrf = re.search(rb'name="csrf" value="([^"]+)"', login["body"])
        assert csrf is not None
        done = request(app, "/login", cookies(login), {"csrf": csrf.group(1).decode(),
                                                       "token": TOKEN})  # fmt: skip
        session = cookies(done)
        assert done["status"].startswith("303"), done["status"]
        print(f"{args.clients} clients, {args.repeat} requests per view (flush {flush_s:.2f} s)")
        print("| view | median ms | max ms | rows | KiB |")
        print("| --- | --- | --- | --- | --- |")
        for label, path in VIEWS:
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                reply = request(app, path, session)
                times.append(time.perf_counter() - t0)
                assert reply["status"].startswith("200"), reply["status"]
            rows = reply["body"].count(b"<tr data-client=")
            print(f"| {label} | {statistics.median(times) * 1000:.0f} | {max(times) * 1000:.0f} "
                  f"| {rows} | {len(reply['body']) / 1024:.0f} |")  # fmt: skip
        store.close()


if __name__ == "__main__":
    main()
