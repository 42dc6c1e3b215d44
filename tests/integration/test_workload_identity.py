"""Who a workload runs as and what it inherits: `user:`, `group:`, `max_processes`, `clean_env`.

Against a real daemon running as root (as the suite does here), with a throwaway system user
made for the test and removed after it.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import REPO, Daemon, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a user")


@pytest.fixture
def account() -> Iterator[pwd.struct_passwd]:
    """A new system user (and its own group) nobody else runs anything as."""
    name = f"mct{secrets.token_hex(4)}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--user-group", "--shell", "/bin/false",
         "--home-dir", f"/nonexistent/{name}", name],
        check=True,
        capture_output=True,
    )  # fmt: skip
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def log_line(daemon: Daemon, name: str, prefix: str) -> Any:
    def find() -> Any:
        path = daemon.log_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        for line in text.splitlines():
            if f" {prefix} " in line or line.startswith(f"{prefix} "):
                return json.loads(line.split(f"{prefix} ", 1)[1])
        return None

    return wait_for(find, what=f"{prefix} line in {name}.log")


def test_user_and_group_are_taken_in_the_child_before_the_workload_runs(
    daemon: Daemon, account: pwd.struct_passwd
) -> None:
    nogroup = grp.getgrnam("nogroup").gr_gid
    users = grp.getgrnam("users").gr_gid  # the account's own supplementary group
    subprocess.run(["usermod", "-aG", "users", account.pw_name], check=True, capture_output=True)
    daemon.workload("as_user", "report_identity", type="script", max_runs=1, user=account.pw_name)
    daemon.workload(
        "as_group",
        "report_identity",
        type="script",
        max_runs=1,
        user=str(account.pw_uid),
        group="nogroup",
        cpu_nice=-2,  # still root when nice is set: a negative value works with user
    )
    daemon.start()
    mine = log_line(daemon, "as_user", "identity")
    assert (mine["uid"], mine["euid"]) == (account.pw_uid, account.pw_uid)
    assert (mine["gid"], mine["egid"]) == (account.pw_gid, account.pw_gid)
    # initgroups: the account's own supplementary groups, none of root's
    assert mine["groups"] == sorted([account.pw_gid, users])
    assert mine["env"] == {"HOME": account.pw_dir, "USER": account.pw_name,
                           "LOGNAME": account.pw_name}  # fmt: skip
    assert mine["pdeathsig"] == 9  # re-armed after the credential change cleared it
    other = log_line(daemon, "as_group", "identity")
    assert (other["uid"], other["gid"], other["egid"]) == (account.pw_uid, nogroup, nogroup)
    assert other["groups"] == sorted([nogroup, users])
    # The log file stays the daemon's.
    info = (daemon.log_dir / "as_user.log").stat()
    assert (info.st_uid, info.st_mode & 0o077) == (0, 0)
    assert daemon.status("as_group")["last_exit"]["exit_code"] == 0


def test_a_user_deleted_under_a_running_daemon_fails_that_start_not_the_daemon(
    daemon: Daemon, account: pwd.struct_passwd
) -> None:
    daemon.workload("as_user", "sleep_forever", user=account.pw_name)
    daemon.workload("other", "sleep_forever")
    daemon.start()
    daemon.wait_state("as_user", "RUNNING")
    other = daemon.wait_state("other", "RUNNING")["pid"]
    # -f: the running workload is this user's process
    subprocess.run(["userdel", "-f", account.pw_name], check=True, capture_output=True)
    daemon.ctl("restart", "as_user", check=False)
    daemon.wait_state("as_user", "BACKOFF", "FATAL")
    log = (daemon.log_dir / "mastercontrold.log").read_text()
    assert f"as_user: cannot start a run: user {account.pw_name!r} does not exist" in log, log
    assert daemon.proc is not None and daemon.proc.poll() is None  # the daemon lives on
    assert daemon.status("other")["pid"] == other  # nothing else disturbed


def test_max_processes_caps_the_users_processes(daemon: Daemon, account: pwd.struct_passwd) -> None:
    daemon.workload(
        "forker",
        "fork_until_refused",
        type="script",
        max_runs=1,
        user=account.pw_name,
        max_processes=4,
    )
    daemon.start()
    log = daemon.log_dir / "forker.log"
    wait_for(lambda: log.exists() and "forked " in log.read_text(), what="forker's count")
    text = log.read_text()
    assert "forked 3 (Resource temporarily unavailable)" in text, text  # 4 with itself


def test_clean_env_gives_a_minimal_environment_plus_env(daemon: Daemon) -> None:
    daemon.workload("inherits", "report_environment", type="script", max_runs=1)
    daemon.workload(
        "clean",
        "report_environment",
        type="script",
        max_runs=1,
        clean_env=True,
        env={"MY_SETTING": "1"},
    )
    daemon.start(env={"MC_DAEMON_SECRET": "s3cr3t", "LC_TIME": "C.UTF-8"})
    inherited = set(log_line(daemon, "inherits", "environment"))
    assert "MC_DAEMON_SECRET" in inherited  # the documented default: the whole environment
    clean = set(log_line(daemon, "clean", "environment"))
    assert {"PATH", "HOME", "USER", "LOGNAME", "LC_TIME", "MY_SETTING"} <= clean
    allowed = {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "MY_SETTING"}
    assert {k for k in clean if not k.startswith("LC_")} <= allowed, clean


def test_validate_refuses_unknown_accounts_with_file_and_line(daemon: Daemon) -> None:
    user = daemon.workload("ghost", "exit_with", user="no_such_user_mct")
    group = daemon.workload("ghoul", "exit_with", group="no_such_group_mct")
    out = daemon.ctl("validate", check=False)
    assert out.returncode == 1
    assert f"{user}:6: user: no such user 'no_such_user_mct' on this host" in out.stdout
    assert f"{group}:6: group: no such group 'no_such_group_mct' on this host" in out.stdout


def _validate_as(account: pwd.struct_passwd, conf: Path) -> subprocess.CompletedProcess[str]:
    """`mastercontrol-ctl validate` of `conf`, run as `account`."""
    return subprocess.run(
        ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
         "--clear-groups", sys.executable, "-m", "mastercontrol.ctl.main",
         "--config-dir", str(conf), "validate"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"},
    )  # fmt: skip


def test_user_needs_a_root_daemon(account: pwd.struct_passwd) -> None:
    # validate runs as an ordinary user here, as a daemon not started by root would.
    conf = Path(tempfile.mkdtemp(prefix="mct-conf-"))
    try:
        conf.chmod(0o755)
        path = conf / "w.yaml"
        path.write_text(
            "name: w\ntype: service\nmodule: tests.integration.workloads\n"
            f"entry_point: sleep_forever\nuser: {account.pw_name}\n"
        )
        path.chmod(0o644)
        out = _validate_as(account, conf)
        assert out.returncode == 0, out.stdout + out.stderr  # its own account: fine
        path.write_text(path.read_text().replace(account.pw_name, "nobody"))
        out = _validate_as(account, conf)
        assert out.returncode == 1, out.stdout + out.stderr
        expected = f"{path}:5: user: needs the daemon to run as root (it runs as uid "
        assert expected in out.stdout, out.stdout
    finally:
        shutil.rmtree(conf)


def test_ctl_run_takes_the_user_too(daemon: Daemon, account: pwd.struct_passwd) -> None:
    daemon.workload("once", "report_identity", type="script", max_runs=1, user=account.pw_name)
    out = daemon.ctl("run", "once")
    line = next(x for x in out.stdout.splitlines() if x.startswith("identity "))
    info = json.loads(line.removeprefix("identity "))
    assert (info["uid"], info["gid"], info["pdeathsig"]) == (account.pw_uid, account.pw_gid, 9)
