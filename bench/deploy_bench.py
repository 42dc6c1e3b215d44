"""Rolling-deploy benchmark: `fab deploy` to 20 clients in waves of 5 on this machine.

Each client is a real install dir behind its own OpenSSH sshd on 127.0.0.1 (the deploy tests'
harness, tests/deploy/fleet.py), with its own daemon and client API. Two deploys are timed: the
first (cold: every client builds its venv from the wheelhouse) and a second that changes only
workload code (the venv is shared with the first release, so nothing is pip-installed). The
health gate is `--min-healthy` seconds (5 by default, the issue's target setting).

    .venv/bin/python bench/deploy_bench.py [--clients 20] [--batch 5] [--min-healthy 5]

Needs root, sshd, ssh-keygen and rsync (as tests/deploy). Prints the figures; paste them into
the hand-written part of bench/RESULTS.md. Everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parents[1]
ROOT = _HERE if (_HERE / "fabfile.py").is_file() else Path.cwd()
sys.path.insert(0, str(ROOT))

from mastercontrol.deploy import build  # noqa: E402
from tests.deploy.fleet import Fleet, keygen, wait_code  # noqa: E402


def timed_deploy(fleet: Fleet, batch: int) -> tuple[float, list[tuple[float, str]]]:
    """Wall time of one `fab deploy --batch=N` and its output lines with their offsets."""
    proc = fleet.popen_fab("deploy", f"--batch={batch}")
    start = time.monotonic()
    lines: list[tuple[float, str]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append((time.monotonic() - start, line.rstrip()))
    code = proc.wait(600)
    took = time.monotonic() - start
    if code != 0:
        raise SystemExit("deploy failed:\n" + "\n".join(t for _, t in lines))
    return took, lines


def waves(lines: list[tuple[float, str]]) -> list[float]:
    """Seconds from each `wave N:` line to the next (the last: to the summary)."""
    marks = [t for t, text in lines if text.startswith(("wave ", "deployment "))]
    return [round(b - a, 1) for a, b in itertools.pairwise(marks)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--batch", type=int, default=5)
    ap.add_argument("--min-healthy", type=float, default=5.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mc-deploy-bench-") as tmp:
        root = Path(tmp)
        keys = {"user": keygen(root / "user"), "host": keygen(root / "host")}
        cache = root / "wheelhouse"
        os.environ[build.WHEELHOUSE_CACHE_ENV] = str(cache)
        t = time.monotonic()
        build.wheelhouse(ROOT, cache)
        wheel_s = time.monotonic() - t
        fleet = Fleet(root / "fleet", keys, cache)
        try:
            fleet.add_clients(
                args.clients, min_healthy_seconds=args.min_healthy, health_deadline_seconds=120
            )
            t = time.monotonic()
            setup = fleet.fab("setup", "--accept-new-host-keys")
            setup_s = time.monotonic() - t
            assert setup.returncode == 0, setup.stdout + setup.stderr
            cold, cold_lines = timed_deploy(fleet, args.batch)
            for c in fleet.clients:
                wait_code(c, "v1")
            fleet.service("v2")
            warm, warm_lines = timed_deploy(fleet, args.batch)
            for c in fleet.clients:
                wait_code(c, "v2")
        finally:
            fleet.stop()
    n_waves = -(-args.clients // args.batch)
    print(f"clients {args.clients}, waves of {args.batch} ({n_waves} waves), gate "
          f"min_healthy {args.min_healthy:g}s; load average {os.getloadavg()[0]:.1f}, "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print(f"wheelhouse build (once, cached): {wheel_s:.1f}s")
    print(f"fab setup --accept-new-host-keys: {setup_s:.1f}s")
    print(f"first deploy (venv built on every client): {cold:.1f}s; waves {waves(cold_lines)}")
    print(f"second deploy (code change, shared venv): {warm:.1f}s; waves {waves(warm_lines)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
