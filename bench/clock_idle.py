"""Idle CPU of the master with cron schedules armed: the price of watching for clock steps.

While any schedule is armed the master looks at the wall clock at least once a second
(`engine/clock.py` JUMP_CHECK_INTERVAL), so a clock step re-plans the schedules at once. This
starts a real mastercontrold with N hourly agents (none fires during the window) and measures
the master's own user+system CPU time and its loop wake-ups over a window. `--repo DIR` runs
the daemon from another checkout (e.g. `git worktree add /tmp/mc-main main`) for a before and
after on the same machine. Imports the standard library, psutil and mastercontrol.ipc.client.

    .venv/bin/python bench/clock_idle.py [--agents 5] [--seconds 60] [--repo DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from mastercontrol.ipc.client import MasterClient

ROOT = Path(__file__).resolve().parent.parent


def measure(repo: Path, agents: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="mc-clock-idle-") as tmp:
        root = Path(tmp)
        conf = root / "conf"
        conf.mkdir()
        for i in range(agents):
            body = {
                "name": f"hourly{i}",
                "type": "agent",
                "schedule": "@hourly",
                "module": "examples.agents.hello_agent",
                "entry_point": "run",
            }
            (conf / f"hourly{i}.yaml").write_text(json.dumps(body))
        sock = root / "mc.sock"
        argv = [
            sys.executable,
            "-m",
            "mastercontrol.daemon.main",
            "--config-dir",
            str(conf),
            "--db-path",
            str(root / "state.db"),
            "--socket-path",
            str(sock),
            "--log-dir",
            str(root / "log"),
        ]
        proc = subprocess.Popen(
            argv, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            client = MasterClient(sock)
            for _ in range(200):
                try:
                    client.ping()
                    break
                except Exception:  # not up yet
                    time.sleep(0.1)
            time.sleep(3)  # let start-up work settle
            master = psutil.Process(proc.pid)
            wake0 = int(client.ping().get("wakeups", 0))
            cpu0, ns0 = master.cpu_times(), _on_cpu_ns(proc.pid)
            time.sleep(seconds)
            cpu1, ns1 = master.cpu_times(), _on_cpu_ns(proc.pid)
            wake1 = int(client.ping().get("wakeups", 0))
        finally:
            proc.terminate()
            proc.wait(30)
    used = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    on_cpu = (ns1 - ns0) / 1e9
    return {
        "cpu_seconds": round(used, 3),  # user+system, in clock ticks (10 ms resolution)
        "on_cpu_ms": round(on_cpu * 1000, 2),  # /proc/PID/schedstat: nanoseconds on a CPU
        "cpu_percent": round(100 * on_cpu / seconds, 4),
        "wakeups": wake1 - wake0,
        "ms_per_wakeup": round(1000 * on_cpu / max(1, wake1 - wake0), 3),
    }


def _on_cpu_ns(pid: int) -> int:
    """Time the process's threads spent on a CPU, in ns (exact, unlike clock-tick CPU times)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repo", type=Path, default=ROOT)
    args = parser.parse_args()
    result = measure(args.repo.resolve(), args.agents, args.seconds)
    print(json.dumps({"repo": str(args.repo), "agents": args.agents, **result}))


if __name__ == "__main__":
    main()
