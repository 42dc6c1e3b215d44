"""child/privileges.py: the environment a workload gets (pure: a mapping in, a mapping out)."""

from __future__ import annotations

import os
import pwd

import pytest

from mastercontrol.child.privileges import (
    DEFAULT_PATH,
    PrivilegeError,
    drop_privileges,
    workload_environment,
)

DAEMON_ENV = {
    "PATH": "/opt/bin:/usr/bin",
    "HOME": "/root",
    "SECRET_TOKEN": "t",
    "LANG": "C.UTF-8",
    "LC_TIME": "de_DE.UTF-8",
    "TZ": "Europe/Berlin",
    "NOTIFY_SOCKET": "/run/systemd/notify",
}


def test_by_default_everything_is_inherited_but_what_is_dropped() -> None:
    env = workload_environment(
        DAEMON_ENV, {"A": "1"}, clean=False, user=None, drop=("NOTIFY_SOCKET",)
    )
    expected = {k: v for k, v in DAEMON_ENV.items() if k != "NOTIFY_SOCKET"}
    assert env == {**expected, "A": "1"}


def test_clean_keeps_locale_time_zone_and_path_and_adds_the_account() -> None:
    me = pwd.getpwuid(os.getuid())
    env = workload_environment(DAEMON_ENV, {"A": "1"}, clean=True, user=None)
    assert env == {
        "PATH": "/opt/bin:/usr/bin",
        "LANG": "C.UTF-8",
        "LC_TIME": "de_DE.UTF-8",
        "TZ": "Europe/Berlin",
        "HOME": me.pw_dir,
        "USER": me.pw_name,
        "LOGNAME": me.pw_name,
        "A": "1",
    }
    assert workload_environment({}, {}, clean=True, user=None)["PATH"] == DEFAULT_PATH


def test_user_sets_its_variables_and_env_still_wins() -> None:
    env = workload_environment(DAEMON_ENV, {"HOME": "/srv"}, clean=False, user="nobody")
    assert (env["USER"], env["LOGNAME"], env["HOME"]) == ("nobody", "nobody", "/srv")
    assert env["SECRET_TOKEN"] == "t"  # not clean: inherited


def test_unknown_account_is_a_privilege_error() -> None:
    with pytest.raises(PrivilegeError, match="user 'no_such_user_pv' does not exist"):
        workload_environment({}, {}, clean=False, user="no_such_user_pv")
    with pytest.raises(PrivilegeError, match="group 'no_such_group_pv' does not exist"):
        drop_privileges(None, "no_such_group_pv")
    assert drop_privileges(None, None) is False
