"""The deploy tasks beside a full rollout, against real sshds: `fab sync` (files only: nothing
switched, nothing restarted), `fab deploy --release=ID --client=NAME` (an already built release,
no build, one client), `fab rollback --client=NAME` (that client only) and `fab rollback
--release=ID` (that release, not the previous one; `--resume` then refuses to undo it)."""

from __future__ import annotations

import re

from tests.deploy.fleet import Fleet, sessions, wait_code
from tests.deploy.test_rollout import setup_fleet


def test_sync_then_deploy_that_release_to_one_client_then_roll_that_client_back(
    fleet: Fleet,
) -> None:
    setup_fleet(fleet, 2)
    assert fleet.fab("deploy").returncode == 0
    pi1, pi2 = fleet.clients
    first = pi1.current()
    assert first is not None and pi2.current() == first
    for c in fleet.clients:
        wait_code(c, "v1")
    pids = {c.name: c.workload()["pid"] for c in fleet.clients}

    fleet.service("v2")
    done = fleet.fab("sync")
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"release (\S+) copied", done.stdout)
    assert found is not None, done.stdout
    synced = found[1]
    for c in fleet.clients:
        assert (c.install_dir / "releases" / synced / "RELEASE").is_file()  # the files landed
        assert c.current() == first  # nothing switched
        assert c.workload()["pid"] == pids[c.name]  # nothing restarted

    before = sessions(fleet.clients)
    done = fleet.fab("deploy", f"--release={synced}", "--client=pi-1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "building release" not in done.stdout  # the synced build, not a new one
    assert pi1.current() == synced and pi2.current() == first
    wait_code(pi1, "v2")
    assert sessions(fleet.clients)["pi-2"] == before["pi-2"]  # --client: pi-2 untouched

    done = fleet.fab("rollback", "--client=pi-1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert pi1.current() == first
    wait_code(pi1, "v1")
    assert sessions(fleet.clients)["pi-2"] == before["pi-2"]
    assert pi2.workload()["pid"] == pids["pi-2"]


def test_rollback_to_a_named_release_runs_that_release_not_the_previous_one(fleet: Fleet) -> None:
    setup_fleet(fleet, 1)
    (pi1,) = fleet.clients
    ids = []
    for code in ("v1", "v2", "v3"):
        fleet.service(code)
        done = fleet.fab("deploy")
        assert done.returncode == 0, done.stdout + done.stderr
        wait_code(pi1, code)
        ids.append(pi1.current())
    first, second, third = ids
    assert len(set(ids)) == 3 and (pi1.install_dir / "previous").read_text().strip() == second

    for bad, why in (("../etc", "invalid release id"), ("20990101T000000Z-nope", "not installed")):
        done = fleet.fab("rollback", f"--release={bad}")
        assert done.returncode == 1, done.stdout + done.stderr
        assert why in done.stdout + done.stderr and "Traceback" not in done.stderr
        assert pi1.current() == third  # nothing switched
    wait_code(pi1, "v3")

    done = fleet.fab("rollback", f"--release={first}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"back on {first}" in done.stdout
    assert pi1.current() == first
    wait_code(pi1, "v1")  # the named release's code, not v2 (the previous release)
    assert (pi1.install_dir / "previous").read_text().strip() == third
    status = fleet.fab("status")
    assert f"current={first} previous={third}" in status.stdout, status.stdout

    # The journal's last entry is that rollback: a plain --resume must not undo it.
    refused = fleet.fab("deploy", "--resume")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "is a `fab rollback`, which --resume never repeats" in refused.stderr
    assert "--resume=ID" in refused.stderr and "Traceback" not in refused.stderr
    assert pi1.current() == first
