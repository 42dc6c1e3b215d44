"""Who a workload child runs as and what environment it sees: `user:`, `group:`, `clean_env:`.

The credential drop runs IN THE CHILD, after fork and before the workload's code (child/spawn.py
calls it in its ordered bootstrap); the master never changes its own credentials or environment.
The workload's environment is computed by the master before the fork (`workload_environment`,
via child/spawn.py), so a `user:` account that is gone fails that start in the master: an
OSError there, which the master records as a failed spawn. The accounts
are looked up with config/accounts.py, as `validate` looks them up. Imports only the standard
library and mastercontrol.config.accounts (never store, daemon, sqlite3, yaml or psutil).

Environment: by default a workload inherits the daemon's whole environment (minus systemd's
variables), then `env:` on top. With `clean_env: true` it gets only MINIMAL_VARIABLES taken
from the daemon (PATH, with a default when unset; LANG, LANGUAGE, LC_*, TZ), HOME, USER and
LOGNAME of the account it runs as, then `env:`. With `user:`, HOME, USER and LOGNAME are that
user's in both cases (`env:` may still override them).

Privileges: supplementary groups first (initgroups: the user's groups; with `group:` alone, none),
then the primary group, then the user, all while still root; after that the process cannot
go back. The kernel clears PR_SET_PDEATHSIG on a credential change, so the caller arms it again.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping

from mastercontrol.config.accounts import lookup_group, lookup_user

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MINIMAL_VARIABLES = ("PATH", "LANG", "LANGUAGE", "TZ")  # plus every LC_*


class PrivilegeError(OSError):
    """The account is gone or a credential call failed: in the child the bootstrap exits 120
    with this; in the master (the environment lookup) the start fails like any spawn error."""


def _account(user: str) -> pwd.struct_passwd:
    try:
        return lookup_user(user)
    except KeyError:
        raise PrivilegeError(f"user {user!r} does not exist") from None


def workload_environment(
    inherited: Mapping[str, str],
    env: Mapping[str, str],
    *,
    clean: bool,
    user: str | None,
    drop: tuple[str, ...] = (),
) -> dict[str, str]:
    """The environment a workload runs with (see the module docstring); `drop`: never kept."""
    if clean:
        result = {
            k: v for k, v in inherited.items() if k in MINIMAL_VARIABLES or k.startswith("LC_")
        }
        result.setdefault("PATH", DEFAULT_PATH)
    else:
        result = {k: v for k, v in inherited.items() if k not in drop}
    if user is not None or clean:
        entry = _account(user) if user is not None else _own_account()
        if entry is not None:
            result.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
        else:  # the daemon's uid has no passwd entry: keep what it was told
            result.update({k: inherited[k] for k in ("HOME", "USER", "LOGNAME") if k in inherited})
    result.update(env)
    return result


def _own_account() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwuid(os.getuid())
    except KeyError:
        return None


def drop_privileges(user: str | None, group: str | None) -> bool:
    """Become `user` (and `group`) for good; True if credentials changed (re-arm PDEATHSIG)."""
    if user is None and group is None:
        return False
    entry = _account(user) if user is not None else None
    try:
        gid = lookup_group(group).gr_gid if group is not None else None
    except KeyError:
        raise PrivilegeError(f"group {group!r} does not exist") from None
    if gid is None:
        assert entry is not None
        gid = entry.pw_gid
    try:
        if entry is not None:
            os.initgroups(entry.pw_name, gid)
        else:
            os.setgroups([])  # group alone: root's supplementary groups must not stay
        os.setgid(gid)
        if entry is not None:
            os.setuid(entry.pw_uid)
    except OSError as exc:
        who = user if user is not None else f"group {group}"
        raise PrivilegeError(f"cannot run as {who}: {exc.strerror}") from None
    return True
