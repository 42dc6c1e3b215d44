"""User and group lookups by name or number: the one rule `user:` and `group:` follow.

Asked by config/hostcheck.py (does the account exist here?) and by the child bootstrap
(child/privileges.py, which becomes that account). Imports only the standard library, so the
child pays for nothing else.
"""

from __future__ import annotations

import grp
import pwd


def lookup_user(user: str) -> pwd.struct_passwd:
    """The passwd entry of a name or a numeric uid; KeyError if there is none."""
    return pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)


def lookup_group(group: str) -> grp.struct_group:
    """The group entry of a name or a numeric gid; KeyError if there is none."""
    return grp.getgrgid(int(group)) if group.isdigit() else grp.getgrnam(group)
