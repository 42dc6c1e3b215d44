"""Config mistakes a newcomer makes, caught by `validate` and by a real daemon at load.

Reserved and overlong names, a schedule that fires every second: each reported as
`FILE:LINE: field: ...`, the bad workload left out and the others running.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.harness import Daemon, wait_for

# Names that would write outside NAME.log's meaning: hidden/relative files, an option-looking
# file, the daemon's own log, internal services' prefix; and one too long for a file name.
BAD_NAMES = {
    "dot": ".",
    "dotdot": "..",
    "dash": "-rf",
    "hidden": ".hidden",
    "daemon_log": "mastercontrold",
    "internal": "@client-api",
    "long": "x" * 300,
    "just_too_long": "y" * 65,
}


def daemon_log(daemon: Daemon) -> str:
    path = daemon.log_dir / "mastercontrold.log"
    return path.read_text(errors="replace") if path.exists() else ""


def write_named(daemon: Daemon, file_stem: str, name: str) -> Path:
    body = {"name": name, "type": "service", "module": "tests.integration.workloads"}
    body["entry_point"] = "sleep_forever"
    return daemon.write(f"{file_stem}.yaml", json.dumps(body, indent=2))


@pytest.mark.parametrize("stem", sorted(BAD_NAMES))
def test_validate_refuses_reserved_and_overlong_names(daemon: Daemon, stem: str) -> None:
    path = write_named(daemon, stem, BAD_NAMES[stem])
    out = daemon.ctl("validate", check=False)
    assert out.returncode == 1, out.stdout
    lines = [line for line in out.stdout.splitlines() if line.startswith(f"{path}:2: name: ")]
    assert len(lines) == 1, out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_a_name_of_64_characters_is_accepted(daemon: Daemon) -> None:
    write_named(daemon, "long_ok", "z" * 64)
    out = daemon.ctl("validate", check=False)
    assert out.returncode == 0, out.stdout


def test_daemon_skips_reserved_names_and_runs_the_others(daemon: Daemon) -> None:
    for stem, name in BAD_NAMES.items():
        write_named(daemon, stem, name)
    write_named(daemon, "good", "good")
    daemon.start()
    daemon.wait_state("good", "RUNNING")
    assert set(daemon.workloads()) == {"good"}
    wait_for(lambda: "daemon_log.yaml:2: name: " in daemon_log(daemon), what="problem logged")


def test_every_second_schedule_validates_with_a_located_warning(daemon: Daemon) -> None:
    path = daemon.workload(
        "fast", "exit_with", type="agent", schedule="*/5 * * * * *"
    )  # seconds last: every second of minutes 0, 5, 10...
    daemon.workload("fine", "exit_with", type="agent", schedule="* * * * * */10")
    out = daemon.ctl("validate", check=False)
    assert out.returncode == 0, out.stdout
    warnings = [line for line in out.stdout.splitlines() if ": warning: " in line]
    assert len(warnings) == 1, out.stdout
    assert warnings[0].startswith(f"{path}:6: schedule: warning: fires every second"), warnings
    daemon.start()
    daemon.wait_state("fine", "SCHEDULED")
    wait_for(
        lambda: f"{path}:6: schedule: warning: fires every second" in daemon_log(daemon),
        what="the warning in the daemon log",
    )
    assert "fast" in daemon.workloads()  # a warning, not an error: it still runs
