"""killpg, the one way the package signals a child's process group: real processes."""

from __future__ import annotations

import signal
import subprocess

from mastercontrol.child.group import killpg
from tests.integration.harness import pid_alive, wait_for


def test_a_group_signal_reaches_the_grandchildren() -> None:
    sh = subprocess.Popen(
        ["sh", "-c", "sleep 60 & echo $!; wait"], stdout=subprocess.PIPE, start_new_session=True
    )
    assert sh.stdout is not None
    grandchild = int(sh.stdout.readline())
    killpg(sh.pid, signal.SIGKILL)
    assert sh.wait(timeout=10) == -signal.SIGKILL
    # The grandchild was in the group: gone too (reparented, so not ours to reap).
    wait_for(lambda: not pid_alive(grandchild), timeout=10, what="grandchild gone")


def test_a_gone_group_is_not_an_error() -> None:
    proc = subprocess.Popen(["true"], start_new_session=True)
    proc.wait(timeout=10)
    killpg(proc.pid, signal.SIGTERM)  # reaped, no such group: nothing happens
    # The leader died between the caller's check and the signal: its own pid is gone too.
    killpg(proc.pid, signal.SIGTERM, unreaped=True)


def test_an_unreaped_leader_without_a_group_yet_is_signalled_itself() -> None:
    # A child that has not called setsid() yet: its pid names no process group.
    proc = subprocess.Popen(["sleep", "60"])
    try:
        killpg(proc.pid, signal.SIGTERM)  # by default only the group: it lives on
        assert proc.poll() is None
        killpg(proc.pid, signal.SIGTERM, unreaped=True)
        assert proc.wait(timeout=10) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.wait(timeout=10)
