"""The last deploy paths, against real sshds: `fab deploy --tag=T` (only the tagged clients get
SSH sessions and the release), `fab deploy --unreachable=fail` (a closed port fails the
deployment instead of leaving it pending; no later wave is touched) and `fab setup-local` (the
control host only: state dir and cached wheelhouse, no connection to any client)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.deploy.fleet import FAB, Fleet, sessions, wait_code
from tests.deploy.test_rollout import setup_fleet
from tests.integration.harness import REPO


def _tag(fleet: Fleet, name: str, tag: str) -> None:
    """Give client `name` the inventory tag `tag` (the fleet writes no tags itself)."""
    text = fleet.inventory.read_text()
    entry = f"  - name: {name}\n"
    assert entry in text
    fleet.inventory.write_text(text.replace(entry, f"{entry}    tags: [{tag}]\n"))


def test_deploy_with_a_tag_touches_only_the_clients_carrying_it(fleet: Fleet) -> None:
    setup_fleet(fleet, 2)
    _tag(fleet, "pi-2", "edge")
    pi1, pi2 = fleet.clients
    none = fleet.fab("deploy", "--tag=nowhere")
    assert none.returncode == 1 and "no client selected" in none.stderr, none.stderr
    assert "Traceback" not in none.stderr

    before = sessions(fleet.clients)
    done = fleet.fab("deploy", "--tag=edge")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "wave 1: pi-2" in done.stdout and "pi-1" not in done.stdout
    assert pi2.current() is not None
    wait_code(pi2, "v1")
    after = sessions(fleet.clients)
    assert after["pi-1"] == before["pi-1"]  # no SSH session for the untagged client
    assert after["pi-2"] > before["pi-2"]
    assert pi1.current() is None and not any((pi1.install_dir / "releases").iterdir())


def test_unreachable_fail_fails_the_deployment_and_stops_before_the_next_wave(
    fleet: Fleet,
) -> None:
    setup_fleet(fleet, 2)
    down, later = fleet.clients
    down.sshd.stop()  # its port is closed now
    before = sessions(fleet.clients)
    done = fleet.fab("deploy", "--batch=1", "--unreachable=fail")
    assert done.returncode == 1, done.stdout + done.stderr  # failed, not incomplete (3)
    assert "pi-1: failed" in done.stdout and "unreachable" in done.stdout
    assert "wave 1 failed" in done.stdout and "wave 2" not in done.stdout
    # Finished, so no `--resume` hint (resume refuses a failed deployment; seen below).
    assert "pending" not in done.stdout and "--resume" not in done.stdout
    assert "a new `fab deploy` reaches them" in done.stdout
    found = re.search(r"deployment (\d+) of \S+: failed", done.stdout)
    assert found is not None, done.stdout
    assert sessions(fleet.clients)["pi-2"] == before["pi-2"]  # the later wave untouched
    assert later.current() is None and down.current() is None

    history = fleet.fab("releases")  # the journal, as the operator reads it
    assert history.returncode == 0, history.stderr
    line = next(x for x in history.stdout.splitlines() if x.startswith(f"#{found[1]} "))
    assert " failed by " in line and "failed 1, untouched 1" in line, line
    assert "pending" not in line
    refused = fleet.fab("deploy", f"--resume={found[1]}")  # a failed deployment is finished
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"deployment {found[1]} has finished: it failed" in refused.stderr, refused.stderr
    assert "never pushes a failed release again" in refused.stderr


def test_setup_local_prepares_the_state_dir_and_wheelhouse_without_touching_clients(
    fleet: Fleet, tmp_path: Path
) -> None:
    fleet.add_clients(1)
    sshd = fleet.clients[0].sshd
    before = sshd.connections()  # the readiness probe's own
    state = fleet.project / "state"
    assert not state.exists()
    done = fleet.fab("setup-local")
    assert done.returncode == 0, done.stdout + done.stderr
    assert state.is_dir()
    assert f"state dir {state}, known_hosts {state / 'known_hosts'}" in done.stdout
    found = re.search(r"control host: wheelhouse (\S+)", done.stdout)
    assert found is not None, done.stdout
    wheels = Path(found[1])
    assert wheels.parent == fleet.wheelhouse_cache  # MCTL_WHEELHOUSE_CACHE: the session's build
    assert (wheels / ".complete").is_file() and any(wheels.glob("mastercontrol-*.whl"))
    assert sshd.connections() == before  # the control host only: no client is contacted
    assert not fleet.clients[0].install_dir.exists()

    # Without rsync and ssh on PATH: each is named, exit 1, no traceback.
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    bare = subprocess.run(
        [FAB, "-r", str(REPO), "setup-local", f"--inventory={fleet.inventory}"],
        capture_output=True, text=True, timeout=120, cwd=fleet.root,
        env={**fleet.env(), "PATH": str(empty)},
    )  # fmt: skip
    assert bare.returncode == 1, bare.stdout + bare.stderr
    assert "control host: rsync not found on PATH" in bare.stdout
    assert "control host: ssh not found on PATH" in bare.stdout
    assert "Traceback" not in bare.stderr
