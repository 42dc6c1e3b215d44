"""Rolling-deploy benchmark: `fab deploy` to N clients (20) in waves of B (5) on this machine.

Each client is a real install dir behind its own OpenSSH sshd on 127.0.0.1 (the deploy tests'
harness, tests/deploy/fleet.py), with its own daemon and client API. Two deploys are timed: the
first (cold: every client builds its dependency layer and venv from the wheelhouse) and a
second whose mastercontrol wheel changed (a comment appended to a copy of the project), so each
client installs that one wheel into a new venv over the dependency layer of the first; workload
code changes too. With `--code-only` the second changes workload code only (the venv is shared,
nothing is installed). The health gate is `--min-healthy` seconds (5 by default, the issue's
target setting). Each wave is split into its update (SSH, rsync, bootstrap, daemon restart, on
every client of the wave in parallel) and its gate, from the deployer's own output lines.

    .venv/bin/python bench/deploy_bench.py [--clients 20] [--batch 5] [--min-healthy 5]
    .venv/bin/python bench/deploy_bench.py --clients 50 --batch 10    # the issue's target

Needs root, sshd, ssh-keygen and rsync (as tests/deploy). Prints the figures; paste them into
the hand-written part of bench/RESULTS.md. Everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parents[1]
ROOT = _HERE if (_HERE / "fabfile.py").is_file() else Path.cwd()
sys.path.insert(0, str(ROOT))

from mastercontrol.deploy import build  # noqa: E402
from tests.deploy.fleet import Fleet, copy_project, keygen, wait_code  # noqa: E402


def timed_deploy(fleet: Fleet, batch: int, root: Path) -> tuple[float, list[tuple[float, str]]]:
    """Wall time of one `fab deploy --batch=N` and its output lines with their offsets."""
    proc = fleet.popen_fab("deploy", f"--batch={batch}", root=root)
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


def waves(lines: list[tuple[float, str]]) -> list[tuple[float, float]]:
    """Per wave: (update, gate) seconds: from its `wave N:` line to its `gate:` line, and from
    there to the next wave (the last: to the summary)."""
    out: list[tuple[float, float]] = []
    start = gate_at = None
    for t, text in lines:
        if text.startswith(("wave ", "deployment ")):
            if start is not None and gate_at is not None:
                out.append((round(gate_at - start, 1), round(t - gate_at, 1)))
            start, gate_at = t, None
        elif text.strip().startswith("gate:"):
            gate_at = t
    return out


def changed_project(dest: Path) -> Path:
    """A copy of this checkout whose mastercontrol wheel differs (one comment more)."""
    copy_project(dest, ROOT)
    with (dest / "mastercontrol" / "__init__.py").open("a") as f:
        f.write("# deploy_bench: a changed wheel\n")
    return dest


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--batch", type=int, default=5)
    ap.add_argument("--min-healthy", type=float, default=5.0)
    ap.add_argument("--code-only", action="store_true",
                    help="the second deploy changes workload code only (shared venv)")  # fmt: skip
    args = ap.parse_args()
    load_start = load()
    with tempfile.TemporaryDirectory(prefix="mc-deploy-bench-") as tmp:
        root = Path(tmp)
        keys = {"user": keygen(root / "user"), "host": keygen(root / "host")}
        cache = root / "wheelhouse"
        os.environ[build.WHEELHOUSE_CACHE_ENV] = str(cache)
        t = time.monotonic()
        build.wheelhouse(ROOT, cache)
        wheel_s = time.monotonic() - t
        second_root = ROOT if args.code_only else changed_project(root / "changed")
        t = time.monotonic()
        second_wheels = build.wheelhouse(second_root, cache)
        wheel2_s = time.monotonic() - t
        first_wheels = build.wheelhouse(ROOT, cache)
        same_deps = build.deps_hash(first_wheels) == build.deps_hash(second_wheels)
        fleet = Fleet(root / "fleet", keys, cache)
        try:
            fleet.add_clients(
                args.clients, min_healthy_seconds=args.min_healthy, health_deadline_seconds=120
            )
            t = time.monotonic()
            setup = fleet.fab("setup", "--accept-new-host-keys", timeout=600)
            setup_s = time.monotonic() - t
            assert setup.returncode == 0, setup.stdout + setup.stderr
            load_before = load()
            cold, cold_lines = timed_deploy(fleet, args.batch, ROOT)
            for c in fleet.clients:
                wait_code(c, "v1")
            fleet.service("v2")
            warm, warm_lines = timed_deploy(fleet, args.batch, second_root)
            for c in fleet.clients:
                wait_code(c, "v2")
            load_after = load()
        finally:
            fleet.stop()
    n_waves = -(-args.clients // args.batch)
    second = ("workload code only, venv shared" if args.code_only
              else "mastercontrol wheel changed, dependency layer reused")  # fmt: skip
    print(f"clients {args.clients}, waves of {args.batch} ({n_waves} waves), gate "
          f"min_healthy {args.min_healthy:g}s, {os.cpu_count()} CPUs; load average (1/5/15 min) "
          f"{load_start} at start, {load_before} before the first deploy, {load_after} after "
          f"the second")  # fmt: skip
    print(f"wheelhouse builds (cached): {wheel_s:.1f}s, second {wheel2_s:.1f}s "
          f"(same dependency wheels: {same_deps})")  # fmt: skip
    print(f"fab setup --accept-new-host-keys: {setup_s:.1f}s")
    print(f"first deploy (cold: layer + venv on every client): {cold:.1f}s; "
          f"waves (update, gate) {waves(cold_lines)}")  # fmt: skip
    print(f"second deploy ({second}): {warm:.1f}s; waves (update, gate) {waves(warm_lines)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
