"""`deploy.max_failed`: clients whose install fails before their switch (here: an invalid config
refused by the client's validator, so it keeps running its old release) count as failed without
stopping the deployment while the failures so far stay within it; one more stops it, and no
later wave is touched. With `keep_releases: 2`, a client that took all three releases keeps
only the last two."""

from __future__ import annotations

from tests.deploy.fleet import Fleet, last_code, sessions, wait_code
from tests.deploy.test_rollout import setup_fleet

BAD = "name: bad\ntype: service\nbogus: 1\n"


def test_failures_before_the_switch_within_max_failed_let_the_deployment_go_on(
    fleet: Fleet,
) -> None:
    setup_fleet(fleet, 3, max_failed=1, keep_releases=2)
    assert fleet.fab("deploy", "--batch=1").returncode == 0
    v1 = {c.name: c.current() for c in fleet.clients}
    pi1, pi2, pi3 = fleet.clients

    fleet.service("v2")
    (fleet.project / "configs" / "pi-2" / "bad.yaml").write_text(BAD)
    done = fleet.fab("deploy", "--batch=1")
    assert done.returncode == 1, done.stdout + done.stderr  # the deployment had a failure
    assert "1 failed so far, within max_failed 1" in done.stdout
    assert pi2.current() == v1["pi-2"]  # never switched
    assert pi1.current() == pi3.current() not in (None, v1["pi-1"])  # the others went on
    wait_code(pi1, "v2")
    wait_code(pi3, "v2")
    assert last_code(pi2) == "v1"
    v2_pi3 = pi3.current()

    # Two failures are past max_failed 1: the second stops the deployment at its wave.
    fleet.service("v3")
    (fleet.project / "configs" / "pi-1" / "bad.yaml").write_text(BAD)
    before = sessions(fleet.clients)
    done = fleet.fab("deploy", "--batch=1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "wave 2 failed" in done.stdout and "wave 3" not in done.stdout
    assert sessions(fleet.clients)["pi-3"] == before["pi-3"]  # the later wave untouched
    assert last_code(pi3) == "v2"

    fleet.service("v4")
    for bad in ("pi-1", "pi-2"):
        (fleet.project / "configs" / bad / "bad.yaml").unlink()
    done = fleet.fab("deploy", "--client=pi-3")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_code(pi3, "v4")
    kept = {p.name for p in (pi3.install_dir / "releases").iterdir()}
    assert kept == {pi3.current(), v2_pi3}, kept  # the first release was pruned
    assert len(list((pi3.install_dir / "venvs").iterdir())) == 1  # same wheels: one venv
