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


# --- module: and command: that cannot be found --------------------------------------------


def test_validate_reports_a_missing_module_and_program_with_file_and_line(
    daemon: Daemon, tmp_path: Path
) -> None:
    mod = daemon.workload("nomod", "run", module="tests.integration.no_such_module")
    top = daemon.workload("notop", "run", module="no_such_top_package.sub")
    notpkg = daemon.workload("notpkg", "run", module="tests.integration.workloads.sub")
    cmd = daemon.write(
        "nocmd.yaml", "name: nocmd\ntype: service\ncommand: [no-such-program-xyz, -v]\n"
    )
    rel = daemon.write(
        "relcmd.yaml",
        f"name: relcmd\ntype: service\ncommand: ./run.sh\nworking_dir: {tmp_path}\n",
    )
    out = daemon.ctl("validate", check=False)
    assert out.returncode == 1, out.stdout
    lines = out.stdout.splitlines()
    assert f"{mod}:4: module: no module named 'tests.integration.no_such_module'" in "\n".join(
        lines
    ), out.stdout
    assert any(
        line.startswith(f"{top}:4: module: no module named 'no_such_top_package'") for line in lines
    ), out.stdout
    assert any(
        line.startswith(f"{notpkg}:4: module: 'tests.integration.workloads' is a module")
        for line in lines
    ), out.stdout
    assert any(
        line.startswith(f"{cmd}:3: command: 'no-such-program-xyz' not found on PATH")
        for line in lines
    ), out.stdout
    assert any(
        line.startswith(f"{rel}:3: command: './run.sh': no such program in {tmp_path}")
        for line in lines
    ), out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_module_check_honours_working_dir_and_runs_no_user_code(
    daemon: Daemon, tmp_path: Path
) -> None:
    app = tmp_path / "app"
    pkg = app / "mypkg"
    pkg.mkdir(parents=True)
    marker = tmp_path / "imported"
    # Importing the package would run this: validation must only look at files.
    (pkg / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (pkg / "job.py").write_text("def run():\n    print('job ran', flush=True)\n")
    daemon.write(
        "job.yaml",
        f"name: job\ntype: script\nmax_runs: 1\nmodule: mypkg.job\nworking_dir: {app}\n",
    )
    out = daemon.ctl("validate", check=False)
    assert out.returncode == 0, out.stdout
    assert not marker.exists()


def test_daemon_leaves_out_a_workload_whose_module_is_missing(daemon: Daemon) -> None:
    path = daemon.workload("nomod", "run", module="tests.integration.no_such_module")
    daemon.workload("good", "sleep_forever")
    daemon.start()
    daemon.wait_state("good", "RUNNING")
    assert set(daemon.workloads()) == {"good"}
    wait_for(
        lambda: f"{path}:4: module: no module named" in daemon_log(daemon),
        what="the problem in the daemon log",
    )


def test_run_of_a_missing_module_prints_no_traceback(daemon: Daemon) -> None:
    path = daemon.workload("nomod", "run", module="tests.integration.no_such_module")
    out = daemon.ctl("run", "nomod", check=False)
    assert out.returncode != 0
    assert "Traceback" not in out.stdout + out.stderr
    assert f"{path}:4: module: no module named" in out.stderr


def test_a_module_gone_after_load_fails_its_run_with_one_line(
    daemon: Daemon, tmp_path: Path
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "vanishing.py").write_text("def run():\n    print('ran')\n")
    daemon.write(
        "gone.yaml",
        f"name: gone\ntype: agent\nmodule: vanishing\nschedule: '0 0 1 1 *'\nworking_dir: {app}\n",
    )
    daemon.start()
    daemon.wait_state("gone", "SCHEDULED")
    (app / "vanishing.py").unlink()
    daemon.ctl("start", "gone")
    wait_for(lambda: daemon.status("gone")["last_exit"], what="the failed run")
    log = (daemon.log_dir / "gone.log").read_text()
    assert "cannot import module 'vanishing': No module named 'vanishing'" in log, log
    assert "Traceback" not in log, log
