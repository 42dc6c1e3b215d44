"""End-to-end rolling deploys against real sshds on 127.0.0.1 (tests/deploy/fleet.py)."""

from __future__ import annotations

import getpass
import re
import signal
import socket
import subprocess
from pathlib import Path

from tests.deploy.fleet import FAB, Fleet, last_code, sessions, wait_code
from tests.integration.harness import REPO


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


def _ids(fleet: Fleet) -> dict[str, str | None]:
    return {c.name: c.current() for c in fleet.clients}


def test_rollback_restores_the_previous_release_and_its_code(fleet: Fleet) -> None:
    setup_fleet(fleet, 2)
    assert fleet.fab("deploy").returncode == 0
    v1 = _ids(fleet)
    fleet.service("v2")
    assert fleet.fab("deploy").returncode == 0
    for c in fleet.clients:
        wait_code(c, "v2")
    done = fleet.fab("rollback")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _ids(fleet) == v1
    for c in fleet.clients:
        wait_code(c, "v1")
    status = fleet.fab("status")
    assert status.returncode == 0
    assert all(f"current={v1[c.name]}" in status.stdout for c in fleet.clients)
    history = fleet.fab("releases")
    assert history.returncode == 0 and "succeeded" in history.stdout
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
                            capture_output=True, text=True, timeout=30).stdout.strip()  # fmt: skip
    (first,) = [x for x in history.stdout.splitlines() if x.startswith("#1 ")]
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    assert f" succeeded by {who} (commit {commit}): updated 2" in first  # who, which commit


def test_a_crashing_release_fails_the_first_gate_which_is_rolled_back_alone(fleet: Fleet) -> None:
    setup_fleet(fleet, 4)
    assert fleet.fab("deploy", "--batch=2").returncode == 0
    v1 = _ids(fleet)
    before = sessions(fleet.clients)
    fleet.service("crash", crash=True)
    done = fleet.fab("deploy", "--batch=2")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "failed the gate" in done.stdout
    assert _ids(fleet) == v1  # wave 1 back on v1; wave 2 never switched
    for c in fleet.clients[:2]:
        wait_code(c, "v1")  # the old code runs again after the crash
        assert "code crash" in c.log()
    after = sessions(fleet.clients)
    for c in fleet.clients[2:]:
        assert after[c.name] == before[c.name], "a later wave was touched"
        assert last_code(c) == "v1" and "code crash" not in c.log()
    # An invalid config in the next release: refused by the client before the switch.
    (fleet.project / "configs" / "svc.yaml").write_text("name: svc\ntype: service\nbogus: 1\n")
    done = fleet.fab("deploy", "--client=pi-3")
    assert done.returncode == 1
    assert "invalid configuration" in done.stdout and "nothing was switched" in done.stdout
    assert fleet.clients[2].current() == v1["pi-3"]
    assert last_code(fleet.clients[2]) == "v1"


def test_a_closed_port_is_pending_and_resume_updates_it_later(fleet: Fleet) -> None:
    setup_fleet(fleet, 3)
    assert fleet.fab("deploy", "--batch=3").returncode == 0
    fleet.service("v2")
    down = fleet.clients[2]
    down.sshd.stop()
    done = fleet.fab("deploy", "--batch=3")
    assert done.returncode == 3, done.stdout + done.stderr  # incomplete: nothing failed
    assert "pi-3: pending" in done.stdout and "resume" in done.stdout
    new = fleet.clients[0].current()
    assert fleet.clients[1].current() == new and down.current() != new
    found = re.search(r"deployment (\d+) of", done.stdout)
    assert found is not None, done.stdout
    down.sshd.start()
    refused = fleet.fab("deploy", "--resume=1")  # the first deployment: finished
    assert refused.returncode == 1 and "deployment 1 has finished" in refused.stderr
    done = fleet.fab("deploy", f"--resume={found[1]}")  # that deployment, given by id
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resuming deployment {found[1]}" in done.stdout
    assert down.current() == new
    wait_code(down, "v2")


def test_a_host_that_never_answers_is_pending_after_the_connect_timeout(fleet: Fleet) -> None:
    # A device that takes the TCP connection but never speaks SSH (a hung sshd, a Pi deep in
    # swap) must not hang the deploy, nor count as failed: pending, like a closed port.
    setup_fleet(fleet, 2)
    fleet.service("v2")
    silent = fleet.clients[1]
    silent.sshd.stop()
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", silent.sshd.port))
        listener.listen(8)  # the kernel completes the handshake; nobody ever answers
        before = silent.current()
        done = fleet.fab("deploy", "--batch=2")  # (fleet.fab's own timeout: never a hang)
    assert done.returncode == 3, done.stdout + done.stderr  # incomplete: nothing failed
    assert "pi-2: pending" in done.stdout, done.stdout
    assert fleet.clients[0].current() != before and silent.current() == before
    wait_code(fleet.clients[0], "v2")


def test_a_changed_host_key_is_refused_before_any_command_runs(
    fleet: Fleet, keys: dict[str, Path]
) -> None:
    setup_fleet(fleet, 2)
    changed = fleet.clients[1]
    changed.sshd.stop()
    changed.sshd.host_key = keys["other_host"]
    changed.sshd.log.unlink()
    changed.sshd.start()
    done = fleet.fab("deploy", "--batch=1")
    assert done.returncode == 1
    assert "HOST KEY CHANGED" in done.stdout
    assert changed.sshd.sessions() == 0  # no login, so no command
    assert changed.current() is None
    assert not any((changed.install_dir / "releases").iterdir())  # `fab setup` made it empty
    assert fleet.clients[0].current() is not None


def test_ctrl_c_mid_deploy_leaves_no_lock_and_resume_finishes(fleet: Fleet) -> None:
    setup_fleet(fleet, 3)
    proc = fleet.popen_fab("deploy", "--batch=1")
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # bounded: the deploy ends, or we stop it at wave 2
            seen.append(line)
            if line.startswith("wave 2"):
                break
        second = fleet.fab("deploy")
        assert second.returncode == 1 and "another deploy is running" in second.stderr
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130, "".join(seen) + out
    assert "fab deploy --resume" in out
    done = fleet.fab("deploy", "--resume")
    assert done.returncode == 0, done.stdout + done.stderr
    ids = set(_ids(fleet).values())
    assert len(ids) == 1 and None not in ids
    for c in fleet.clients:
        wait_code(c, "v1")


def test_dry_run_opens_no_connection_and_an_unknown_host_key_is_refused(fleet: Fleet) -> None:
    fleet.add_clients(2)
    before = [c.sshd.connections() for c in fleet.clients]  # the readiness probe's own
    env_url = "http://127.0.0.1:9"  # nothing listens: the dry run says so
    done = subprocess.run(
        [FAB, "-r", str(REPO), "deploy", "--dry-run", f"--inventory={fleet.inventory}"],
        capture_output=True, text=True, timeout=120,
        env={**fleet.env(), "MCTL_CENTRAL_URL": env_url}, cwd=fleet.root,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "wave 1: pi-1, pi-2" in done.stdout
    assert "bootstrap.sh install" in done.stdout and "rsync" in done.stdout
    assert "central: cannot be reached" in done.stdout
    assert [c.sshd.connections() for c in fleet.clients] == before
    assert not (fleet.project / "state").exists()
    assert not any(c.install_dir.exists() for c in fleet.clients)

    # No `fab setup --accept-new-host-keys` ran: every host key is unknown, so a real deploy is
    # refused at the handshake (no login, so no command) and the clients stay untouched.
    done = fleet.fab("deploy")
    assert done.returncode == 1, done.stdout + done.stderr
    for c in fleet.clients:
        assert re.search(rf"  {c.name}: failed: .*host key not in", done.stdout), done.stdout
    assert "fab setup --accept-new-host-keys" in done.stdout
    assert all(c.sshd.sessions() == 0 for c in fleet.clients)
    assert not any(c.install_dir.exists() for c in fleet.clients)
