"""FATAL (and the restart count) survives a daemon restart: a crash-looping service is not
tried again just because the daemon restarted, only once its config changed."""

from __future__ import annotations

import time

from tests.faults.probes import run_rows
from tests.integration.harness import Daemon


def _crashy(daemon: Daemon, **extra: object) -> None:
    daemon.workload(
        "crashy",
        "crash",
        restart_delay=0.1,
        restart_delay_max=0.2,
        max_retries=2,
        fatal_retry_delay=0,
        start_seconds=1,
        **extra,
    )


def _crashy_runs(daemon: Daemon) -> int:
    return sum(1 for r in run_rows(daemon.db_path) if r[0] == "crashy")


def test_fatal_service_stays_fatal_across_restart_until_its_config_changes(
    daemon: Daemon,
) -> None:
    _crashy(daemon)
    daemon.workload("svc", "sleep_forever")
    daemon.start()
    fatal = daemon.wait_state("crashy", "FATAL")
    restarts = fatal["restarts"]
    assert restarts == 2
    assert daemon.stop() == 0
    runs = _crashy_runs(daemon)
    assert runs == 3

    daemon.start()
    daemon.wait_state("svc", "RUNNING")
    time.sleep(1.0)  # time for a spawn that must not happen
    assert _crashy_runs(daemon) == runs  # not one try more
    st = daemon.status("crashy")
    assert st["state"] == "FATAL" and st["pid"] is None
    assert st["restarts"] == restarts
    assert (
        "FATAL kept across a daemon restart" in (daemon.log_dir / "mastercontrold.log").read_text()
    )
    assert daemon.stop() == 0
    assert _crashy_runs(daemon) == runs

    _crashy(daemon, env={"CHANGED": "1"})  # a changed config deserves a new try
    daemon.start()
    daemon.wait_state("crashy", "FATAL")
    assert daemon.stop() == 0
    assert _crashy_runs(daemon) == runs + 3


def test_another_release_tries_a_fatal_service_again(daemon: Daemon) -> None:
    """A deploy or rollback switches the release (other code, same YAML): FATAL is kept only
    within one release, so the rolled-back service runs again."""
    _crashy(daemon)
    daemon.start(env={"MCTL_RELEASE": "r1"})
    daemon.wait_state("crashy", "FATAL")
    assert daemon.stop() == 0
    runs = _crashy_runs(daemon)

    daemon.start(env={"MCTL_RELEASE": "r1"})  # the same release: kept
    time.sleep(1.0)  # time for a spawn that must not happen
    assert daemon.status("crashy")["state"] == "FATAL"
    assert daemon.stop() == 0
    assert _crashy_runs(daemon) == runs

    daemon.start(env={"MCTL_RELEASE": "r2"})  # another release: a new try
    daemon.wait_state("crashy", "FATAL")
    assert daemon.stop() == 0
    assert _crashy_runs(daemon) == runs + 3


def test_a_release_of_the_same_code_keeps_fatal_and_other_code_tries_again(daemon: Daemon) -> None:
    """The deployer names each release's code (MCTL_CODE: its wheels, app/ and env). A release
    that changed only other workloads' files runs the same code: nothing to try again for."""
    _crashy(daemon)
    daemon.start(env={"MCTL_RELEASE": "r1", "MCTL_CODE": "c1"})
    daemon.wait_state("crashy", "FATAL")
    assert daemon.stop() == 0
    runs = _crashy_runs(daemon)

    daemon.start(env={"MCTL_RELEASE": "r2", "MCTL_CODE": "c1"})  # a new release, the same code
    time.sleep(1.0)  # time for a spawn that must not happen
    assert daemon.status("crashy")["state"] == "FATAL"
    assert daemon.stop() == 0
    assert _crashy_runs(daemon) == runs

    daemon.start(env={"MCTL_RELEASE": "r3", "MCTL_CODE": "c2"})  # other code: a new try
    daemon.wait_state("crashy", "FATAL")
    assert daemon.stop() == 0
    assert _crashy_runs(daemon) == runs + 3
