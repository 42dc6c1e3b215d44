"""The daemon's files are private and it never follows what a local user planted (issue 8):
the socket dir was created 0755 and state.db and the daemon log 0644; a `<name>.log` symlink
made the daemon append workload output to its target and `logs` print a 0600 file."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from tests.integration.harness import Daemon, wait_for

EX_CONFIG = 78


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_daemon_creates_its_directories_and_files_private(daemon: Daemon) -> None:
    daemon.workload("talker", "sleep_for", params={"seconds": 300})
    daemon.start()
    daemon.wait_state("talker", "RUNNING")
    wait_for(lambda: (daemon.log_dir / "mastercontrold.log").exists(), what="the daemon log")
    for directory in (daemon.socket_path.parent, daemon.db_path.parent, daemon.log_dir):
        assert _mode(directory) == 0o700, directory
    for path in (
        daemon.db_path,
        daemon.log_dir / "mastercontrold.log",
        daemon.socket_path.with_name(daemon.socket_path.name + ".lock"),
    ):
        assert _mode(path) & 0o077 == 0, f"{path}: {_mode(path):04o}"


def _daemon_files(daemon: Daemon) -> list[Path]:
    """Everything the daemon writes: the DB and its WAL/SHM, the locks, the daemon log, a
    workload log and its rotated copies."""
    db = daemon.db_path
    files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    files += [daemon.socket_path.with_name(daemon.socket_path.name + ".lock")]
    files += [daemon.log_dir / n for n in ("mastercontrold.log", "talker.log", "talker.log.1")]
    return files


def _chatty(daemon: Daemon) -> None:
    daemon.workload(
        "talker",
        "tick_printer",
        module="tests.faults.workloads",
        params={"interval": 0.01, "size": 500},
        log_max_bytes=4096,
        log_backups=2,
    )


def test_every_file_incl_wal_shm_and_rotated_logs_is_private(daemon: Daemon) -> None:
    _chatty(daemon)
    daemon.start()
    files = _daemon_files(daemon)
    wait_for(lambda: all(p.exists() for p in files), what=f"all of {files}")
    for path in files:
        assert _mode(path) & 0o077 == 0, f"{path}: {_mode(path):04o}"


def test_with_a_socket_group_dirs_are_0750_and_files_0640_of_that_group(
    daemon: Daemon,
) -> None:
    staff = 50  # Debian's `staff` group
    daemon.write("daemon.yaml", "daemon:\n  socket_group: staff\n")
    _chatty(daemon)
    daemon.start()
    for directory in (daemon.socket_path.parent, daemon.db_path.parent, daemon.log_dir):
        assert _mode(directory) & 0o777 == 0o750, f"{directory}: {_mode(directory):04o}"
        assert os.stat(directory).st_gid == staff, directory
    assert _mode(daemon.socket_path) == 0o660 and os.stat(daemon.socket_path).st_gid == staff
    files = [p for p in _daemon_files(daemon) if not p.name.endswith(".lock")]
    wait_for(lambda: all(p.exists() for p in files), what=f"all of {files}")
    for path in files:
        assert _mode(path) & 0o037 == 0, f"{path}: {_mode(path):04o}"  # at most 0640
        assert os.stat(path).st_gid == staff, f"{path} is not group staff"


def test_workloads_still_get_the_usual_umask(daemon: Daemon, tmp_path: Path) -> None:
    marker = tmp_path / "made-by-workload"
    daemon.workload("maker", "count_run", type="script", max_runs=1, params={"marker": str(marker)})
    daemon.start()
    daemon.wait_state("maker", "COMPLETED")
    assert _mode(marker) == 0o644


def test_a_planted_log_symlink_is_neither_written_nor_read(daemon: Daemon, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("top secret\n")
    secret.chmod(0o600)
    victim = tmp_path / "victim"
    victim.write_text("")
    daemon.log_dir.mkdir(mode=0o700, parents=True)
    (daemon.log_dir / "talker.log").symlink_to(victim)
    (daemon.log_dir / "reader.log").symlink_to(secret)
    daemon.workload("talker", "exit_with", params={"code": 0})
    daemon.workload("reader", "sleep_for", params={"seconds": 300})
    daemon.start()
    daemon.wait_state("reader", "RUNNING")
    wait_for(lambda: daemon.status("talker")["restarts"] >= 2, what="talker to print and exit")
    assert victim.read_text() == ""
    out = daemon.ctl("logs", "reader", check=False)
    assert "top secret" not in out.stdout
    assert out.returncode == 1
    assert "symlink" in out.stderr
    daemon.stop()
    offline = daemon.ctl("logs", "reader", check=False)  # read without the daemon, too
    assert "top secret" not in offline.stdout
    assert "symlink" in offline.stderr


def test_a_world_writable_log_dir_is_refused(daemon: Daemon) -> None:
    daemon.log_dir.mkdir(parents=True)
    daemon.log_dir.chmod(0o777)
    daemon.workload("svc", "sleep_for", params={"seconds": 300})
    daemon.start(wait=False)
    assert daemon.proc is not None
    assert daemon.proc.wait(30) == EX_CONFIG
    assert "world-writable" in daemon.stderr()
    assert str(daemon.log_dir) in daemon.stderr()


def test_a_deleted_log_dir_comes_back_with_its_group_and_setgid(daemon: Daemon) -> None:
    """It came back 0750 owned by the daemon's group (root), not `socket_group`: the members
    of that group could no longer read the logs written after the deletion."""
    staff = 50
    daemon.write("daemon.yaml", "daemon:\n  socket_group: staff\n")
    _chatty(daemon)
    daemon.start()
    talker = daemon.log_dir / "talker.log"
    wait_for(talker.exists, what="talker.log")
    before = os.stat(daemon.log_dir)
    assert before.st_mode & stat.S_ISGID and before.st_gid == staff
    shutil.rmtree(daemon.log_dir)
    wait_for(talker.exists, what="talker.log recreated")
    after = os.stat(daemon.log_dir)
    assert stat.S_IMODE(after.st_mode) == stat.S_IMODE(before.st_mode), f"{after.st_mode:o}"
    assert after.st_gid == staff
    assert os.stat(talker).st_gid == staff


def test_a_world_readable_daemon_yaml_holding_a_token_is_warned_about_in_the_log(
    daemon: Daemon,
) -> None:
    secret = "s3cr3t-device-token-0123456789"
    daemon_yaml = daemon.write("daemon.yaml", f"fleet:\n  api_token: {secret}\n")
    daemon_yaml.chmod(0o644)  # any local user could read the device's token
    daemon.workload("svc", "sleep_forever")
    daemon.start()
    daemon.wait_state("svc", "RUNNING")  # a warning, not a refusal: the workloads run
    log_path = daemon.log_dir / "mastercontrold.log"
    line = wait_for(
        lambda: next((x for x in log_path.read_text().splitlines() if "api_token" in x), None),
        what="the token warning in the daemon log",
    )
    assert "WARNING" in line and f"{daemon_yaml}: warning: holds fleet.api_token" in line, line
    assert secret not in log_path.read_text() and secret not in daemon.stderr()
    validate = daemon.ctl("validate")
    assert "warning: holds fleet.api_token" in validate.stdout + validate.stderr
    assert daemon.stop() == 0

    daemon_yaml.chmod(0o600)  # the fix the warning asks for: no warning on the next start
    log_path.unlink()
    daemon.start()
    daemon.wait_state("svc", "RUNNING")
    assert "api_token" not in log_path.read_text()
    assert daemon.stop() == 0
