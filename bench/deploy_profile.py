"""Where one client's update goes: the steps of `Remote.update` timed one by one on a single
client (a real sshd on 127.0.0.1, tests/deploy/fleet.py), for a release whose mastercontrol
wheel changed: the SSH connection and status command, the rsync of the staged release, and the
bootstrap run with `sh -x` and a timestamped PS4, so each of its commands (venv over the
dependency layer, validate, state backup, switch, daemon stop and start, prune) gets its own
time. The gate that follows is `min_healthy_seconds` plus one poll at most.

    .venv/bin/python bench/deploy_profile.py [--repeat 3]

Needs root, sshd, ssh-keygen and rsync (as tests/deploy). Prints medians; everything it starts
is stopped at the end.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parents[1]
ROOT = _HERE if (_HERE / "fabfile.py").is_file() else Path.cwd()
sys.path.insert(0, str(ROOT))

from mastercontrol.config.load import load_inventory  # noqa: E402
from mastercontrol.deploy import build, layout  # noqa: E402
from mastercontrol.deploy.ssh import SshSettings, connect, rsync_argv  # noqa: E402
from tests.deploy.fleet import Fleet, copy_project, keygen, wait_code  # noqa: E402

# A bootstrap command -> the step it belongs to (first match; the rest is "other").
STEPS = (
    ("venv over the dependency layer", ("-m venv", "site_packages", "sysconfig",
                                        "mastercontrol.deploy.wheel", ".pth")),
    ("validate (the new release's ctl)", (" validate",)),
    ("state backup", ("backup", "sqlite3")),
    ("stop the old daemon", (" down",)),
    ("start the new daemon (up --detach)", ("up --detach",)),
    ("switch current", ("ln -sfn", "mv -T", "previous")),
)  # fmt: skip


def step_of(command: str) -> str:
    for name, needles in STEPS:
        if any(n in command for n in needles):
            return name
    return "other (sh, checks, prune)"


def trace_steps(stderr: str) -> dict[str, float]:
    """Seconds per step from `sh -x` lines `+<epoch> command`: each line's time runs to the
    next line's."""
    marks: list[tuple[float, str]] = []
    for line in stderr.splitlines():
        head, _, rest = line.lstrip("+").partition(" ")
        try:
            marks.append((float(head), rest))
        except ValueError:
            continue
    out: dict[str, float] = {}
    for (t, cmd), (t_next, _) in itertools.pairwise(marks):
        out[step_of(cmd)] = out.get(step_of(cmd), 0.0) + t_next - t
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    load_start = "/".join(f"{x:.1f}" for x in os.getloadavg())
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="mc-deploy-profile-") as tmp:
        root = Path(tmp)
        keys = {"user": keygen(root / "user"), "host": keygen(root / "host")}
        cache = root / "wheelhouse"
        os.environ[build.WHEELHOUSE_CACHE_ENV] = str(cache)
        fleet = Fleet(root / "fleet", keys, cache)
        try:
            fleet.add_clients(1)
            assert fleet.fab("setup", "--accept-new-host-keys").returncode == 0
            assert fleet.fab("deploy").returncode == 0  # cold: the dependency layer is built
            inv, _ = load_inventory(fleet.inventory)
            (client,) = inv.clients
            state = fleet.project / "state"
            ssh = SshSettings(known_hosts=state / "known_hosts", connect_timeout=10)
            where = layout.RemoteLayout(client.install_dir)
            for i in range(args.repeat):
                project = copy_project(root / f"changed-{i}", ROOT)
                with (project / "mastercontrol" / "__init__.py").open("a") as f:
                    f.write(f"# deploy_profile {i}\n")
                fleet.service(f"p{i}")
                rid = layout.new_release_id(f"{i:04x}", time.time() + 60 * (i + 1))
                build.stage(project, state, rid, [client], fleet.project / "configs",
                            fleet.project / "app")  # fmt: skip
                staged = build.staged(state, rid, client.name)
                t = time.monotonic()
                conn = connect(client, ssh)
                conn.run(layout.status_command(where))
                rows.setdefault("SSH connect + status", []).append(time.monotonic() - t)
                t = time.monotonic()
                conn.run(layout.prepare_command(where, rid))
                argv = rsync_argv(staged, client, where.release(rid), ssh)
                copied = subprocess.run(argv, capture_output=True, check=False)
                assert copied.returncode == 0, copied.stderr
                rows.setdefault("mkdir + rsync (--link-dest)", []).append(time.monotonic() - t)
                cmd = layout.install_command(where, rid, 5, client.python)
                t = time.monotonic()
                done = conn.run("PS4='+$(date +%s.%N) ' " + cmd.replace("sh ", "sh -x ", 1))
                rows.setdefault("bootstrap install, total", []).append(time.monotonic() - t)
                assert done.exited == 0, done.stderr[-2000:]
                for step, took in trace_steps(done.stderr).items():
                    rows.setdefault(f"  {step}", []).append(took)
                conn.close()
                wait_code(fleet.clients[0], f"p{i}")
        finally:
            fleet.stop()
    load_end = "/".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"one client, {args.repeat} code-and-wheel releases; load average {load_start} at "
          f"start, {load_end} at the end; medians:")  # fmt: skip
    for name, values in rows.items():
        print(f"{name:40} {statistics.median(values):6.2f} s")
    print("(the bootstrap steps are measured with sh -x, which adds a fork of date per line)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
