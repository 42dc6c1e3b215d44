"""End-to-end rolling deploys against real sshds on 127.0.0.1 (tests/deploy/fleet.py)."""

from __future__ import annotations

from tests.deploy.fleet import Fleet, last_code, sessions, wait_code


def setup_fleet(fleet: Fleet, n: int, **deploy: object) -> None:
    fleet.add_clients(n, **deploy)
    done = fleet.fab("setup", "--accept-new-host-keys")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("host key SHA256:") == n


def test_clean_deploy_in_waves_of_two_updates_every_client_to_the_new_code(fleet: Fleet) -> None:
    setup_fleet(fleet, 4)
    done = fleet.fab("deploy", "--batch=2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "wave 1: pi-1, pi-2" in done.stdout and "wave 2: pi-3, pi-4" in done.stdout
    first = {c.current() for c in fleet.clients}
    assert len(first) == 1 and None not in first
    for c in fleet.clients:
        wait_code(c, "v1")
    fleet.service("v2")
    done = fleet.fab("deploy", "--batch=2")
    assert done.returncode == 0, done.stdout + done.stderr
    second = {c.current() for c in fleet.clients}
    assert len(second) == 1 and second != first
    for c in fleet.clients:
        wait_code(c, "v2")
    assert all(n > 0 for n in sessions(fleet.clients).values())
