"""Cost of the heartbeat sender on an idle device: its CPU and memory over a bounded window.

A real mastercontrold runs N idle workloads in a temporary directory; a local HTTP receiver
(this process, its own thread, 127.0.0.1, port 0) stands in for the central API. The heartbeat
service runs either as the master's `@heartbeat` internal child (`--mode internal`, with
`fleet.enabled: true`; the default once the master synthesizes it) or as a subprocess calling
`mastercontrol.fleet.heartbeat_service.main(...)` (`--mode subprocess`: a fresh interpreter, so
its RSS shares nothing with the master and is an upper bound of the forked child's).

Measured, from the first heartbeat received until the end of the window: the sender's own
user+system CPU, its RSS and USS at the end, heartbeats delivered, their mean body size; and
the time from starting the sender to the first heartbeat. Figures go to stdout and into the
"Heartbeat sender" section at the end of bench/RESULTS.md (kept when run.py rewrites the file,
since it sits below the hand-written-analysis marker).

    .venv/bin/python bench/heartbeat_bench.py [--seconds 60] [--interval 1] [--workloads 10]

Imports the standard library, psutil, bench.drivers/procs and mastercontrol.ipc.client.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` and the workloads importable
    sys.path.insert(0, str(ROOT))

from bench import procs  # noqa: E402
from bench.drivers import MasterControl, Spec  # noqa: E402

MiB = 1024 * 1024
RESULTS = ROOT / "bench" / "RESULTS.md"
BEGIN = "<!-- heartbeat_bench: begin (rewritten by bench/heartbeat_bench.py) -->"
END = "<!-- heartbeat_bench: end -->"
TOKEN = "bench-heartbeat-token"


class Receiver:
    """Counts heartbeats: arrival times (monotonic) and body sizes."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, int]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(size)
                with receiver.lock:
                    receiver.arrivals.append((time.monotonic(), size))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def since(self, t0: float) -> list[tuple[float, int]]:
        with self.lock:
            return [a for a in self.arrivals if a[0] >= t0]

    def first_after(self, t0: float, timeout: float) -> float:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = self.since(t0)
            if got:
                return got[0][0]
            time.sleep(0.01)
        raise SystemExit(f"no heartbeat arrived within {timeout:g}s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_pid(mc: MasterControl, name: str, timeout: float = 30.0) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state, pid = mc.states().get(name, ("", None))
        if state == "RUNNING" and pid:
            return pid
        time.sleep(0.05)
    raise SystemExit(f"{name} did not reach RUNNING in {timeout:g}s")


def run(seconds: float, interval: float, workloads: int, mode: str) -> dict[str, Any]:
    receiver = Receiver()
    with tempfile.TemporaryDirectory(prefix="mc-hb-bench-") as tmp:
        work = Path(tmp)
        mc = MasterControl(work)
        conf = work / "conf"
        conf.mkdir(parents=True)
        fleet = {
            "enabled": mode == "internal",
            "client_name": "bench-pi",
            "central_api_url": receiver.url,
            "heartbeat_interval_seconds": interval,
            "api_token": TOKEN,
            "api_port": free_port(),  # @client-api runs too in internal mode: not on 9100
        }
        (conf / "daemon.yaml").write_text(json.dumps({"fleet": fleet}))
        os.chmod(conf / "daemon.yaml", 0o600)
        sender: subprocess.Popen[bytes] | None = None
        try:
            mc.start([Spec(f"idle{i}", "idle") for i in range(workloads)])
            for i in range(workloads):
                wait_for_pid(mc, f"idle{i}")
            started = time.monotonic()
            if mode == "internal":
                pid = wait_for_pid(mc, "@heartbeat")
            else:
                params = {
                    "config_dir": str(conf),
                    "socket_path": str(work / "mc.sock"),
                    "state_dir": str(work),
                    "log_dir": str(work / "log"),
                    "section_digest": "bench",
                }
                code = (
                    "from mastercontrol.fleet.heartbeat_service import main; "
                    f"main(**{json.dumps(params)})"
                )
                with (work / "heartbeat.out").open("wb") as out:
                    sender = subprocess.Popen(
                        [sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.DEVNULL,
                        stdout=out, stderr=out, start_new_session=True,
                    )  # fmt: skip
                pid = sender.pid
            first = receiver.first_after(started, timeout=30.0)
            cpu0 = procs.cpu_seconds(pid)
            t0 = time.monotonic()
            time.sleep(seconds)
            window = time.monotonic() - t0
            cpu = procs.cpu_seconds(pid) - cpu0
            mem = psutil.Process(pid).memory_full_info()
            got = receiver.since(t0)
        finally:
            if sender is not None and sender.poll() is None:
                sender.terminate()
                sender.wait(10)
            mc.cleanup()
    receiver.server.shutdown()
    beats = len(got)
    return {
        "mode": mode,
        "workloads": workloads,
        "interval": interval,
        "window": window,
        "first_heartbeat_s": first - started,
        "cpu_s": cpu,
        "cpu_percent": 100.0 * cpu / window,
        "cpu_ms_per_beat": 1000.0 * cpu / beats if beats else float("nan"),
        "rss_mib": mem.rss / MiB,
        "uss_mib": mem.uss / MiB,
        "beats": beats,
        "body_bytes": sum(size for _, size in got) / beats if beats else 0.0,
    }


def section(r: dict[str, Any], argv: list[str]) -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    first_note = "from the master starting @heartbeat" if r["mode"] == "internal" else "from spawn"
    rows = [
        ("heartbeats delivered in the window", f"{r['beats']} in {r['window']:.1f} s"),
        ("sender CPU (user+system) in the window", f"{r['cpu_s']:.3f} s"),
        ("sender CPU, mean", f"{r['cpu_percent']:.2f} % of one core"),
        ("sender CPU per heartbeat", f"{r['cpu_ms_per_beat']:.1f} ms"),
        ("sender RSS at the end", f"{r['rss_mib']:.1f} MiB"),
        ("sender USS at the end", f"{r['uss_mib']:.1f} MiB"),
        ("mean heartbeat body", f"{r['body_bytes']:.0f} bytes"),
        (f"first heartbeat ({first_note})", f"{r['first_heartbeat_s']:.2f} s"),
    ]
    lines = [
        BEGIN,
        "## Heartbeat sender (bench/heartbeat_bench.py)",
        "",
        "- Command: `" + " ".join([".venv/bin/python bench/heartbeat_bench.py", *argv]) + "`",
        f"- Date: {datetime.now(UTC).isoformat(timespec='seconds')}; nproc {os.cpu_count()}; "
        f"Python {platform.python_version()}; load average at the end {load}",
        f"- Sender run as: {r['mode']} "
        + (
            "(the master's `@heartbeat` child, `fleet.enabled: true`)"
            if r["mode"] == "internal"
            else "(a subprocess calling `main(...)`: a fresh interpreter, RSS shared with nothing)"
        ),
        f"- Idle device: {r['workloads']} idle workloads, heartbeat interval {r['interval']:g} s "
        "(±10 % jitter), receiver on 127.0.0.1 answering 204",
        "",
        "| figure | value |",
        "| --- | ---: |",
        *[f"| {name} | {value} |" for name, value in rows],
        "",
        "Each heartbeat is one `list` request over the IPC socket, one psutil system sample "
        "(a few /proc and /sys reads, two statvfs) and one HTTP POST on a fresh connection. "
        "At the default 30 s interval the CPU share is the per-heartbeat figure divided by 30 s.",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_results(text: str, path: Path = RESULTS) -> None:
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        new = head + text + tail
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window")
    parser.add_argument("--interval", type=float, default=1.0, help="heartbeat interval")
    parser.add_argument("--workloads", type=int, default=10, help="idle workloads")
    parser.add_argument("--mode", choices=("internal", "subprocess"), default="internal")
    parser.add_argument("--no-results", action="store_true", help="print only")
    args = parser.parse_args()
    if not 1 <= args.seconds <= 3600 or not 0.1 <= args.interval <= 600:
        parser.error("--seconds must be 1-3600 and --interval 0.1-600")
    result = run(args.seconds, args.interval, args.workloads, args.mode)
    text = section(result, sys.argv[1:])
    print(text)
    if not args.no_results:
        write_results(text)


if __name__ == "__main__":
    main()
