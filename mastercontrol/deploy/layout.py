"""The release layout on a client and the remote commands that act on it (pure).

A release id is `YYYYmmddTHHMMSSZ-<commit>` (time first, so ids sort by age); on the client:
`install_dir/releases/<id>/` (venv, config, app, env, RELEASE, bootstrap.sh) and `current`, a
symlink to the active release that contrib/bootstrap.sh switches atomically. Every command built
here quotes every value with shlex.quote: a name or path never reaches a shell unquoted.

Imports only the standard library; must not import fabric, the daemon or the API.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass

from mastercontrol.errors import DeployError

# Release ids and client names are checked before they are used in a path or a command.
RELEASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
_COMMIT = re.compile(r"[0-9a-f]{4,40}")

BOOTSTRAP = "bootstrap.sh"

# contrib/bootstrap.sh's exit codes, so the deployer can say what went wrong.
BOOTSTRAP_EXITS = {
    2: "usage error",
    3: "Python 3.11 or later not found",
    4: "installing the release failed",
    5: "the release's configuration is invalid (nothing was switched)",
    6: "the daemon did not start on the new release",
    7: "no such release on the client",
    8: "another bootstrap is running on the client",
}


def check_release_id(value: str) -> str:
    """`value` if it is a valid release id, else DeployError saying why."""
    if not RELEASE_ID.fullmatch(value) or ".." in value:
        raise DeployError(
            f"invalid release id {value!r}: letters, digits, '.', '_' and '-' only "
            "(at most 80, not starting with a punctuation mark)"
        )
    return value


def new_release_id(commit: str | None, now: float | None = None) -> str:
    """A fresh id: UTC time then the (short) git commit, or `nogit`."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    tail = commit if commit is not None and _COMMIT.fullmatch(commit) else "nogit"
    return check_release_id(f"{stamp}-{tail}")


@dataclass(frozen=True)
class RemoteLayout:
    """Where things live under one client's install_dir."""

    install_dir: str

    @property
    def releases(self) -> str:
        return f"{self.install_dir}/releases"

    def release(self, release_id: str) -> str:
        return f"{self.releases}/{check_release_id(release_id)}"

    def bootstrap(self, release_id: str) -> str:
        return f"{self.release(release_id)}/{BOOTSTRAP}"


def _sh(*argv: str) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def python_check_command(python: str) -> str:
    """Print the client Python's version; exit 1 if it is older than 3.11."""
    code = "import sys; print(sys.version.split()[0]); sys.exit(sys.version_info < (3, 11))"
    return _sh(python, "-c", code)


def releases_dir_command(layout: RemoteLayout) -> str:
    return _sh("mkdir", "-p", "--", layout.releases)


def prepare_command(layout: RemoteLayout, release_id: str) -> str:
    """Create the release directory (rsync fills it)."""
    return _sh("mkdir", "-p", "--", layout.release(release_id))


def install_command(layout: RemoteLayout, release_id: str, keep: int, python: str) -> str:
    """Build the release's venv, validate its config, switch `current`, restart."""
    return _sh(
        "sh", layout.bootstrap(release_id), "install", layout.install_dir, release_id,
        str(keep), python,
    )  # fmt: skip


def rollback_command(layout: RemoteLayout, current: str, target: str | None = None) -> str:
    """Switch back to `target` (default: the release before the current one) and restart.

    Runs the bootstrap of the release being left (`current`): it is known to be there.
    """
    argv = ["sh", layout.bootstrap(current), "rollback", layout.install_dir]
    if target is not None:
        argv.append(check_release_id(target))
    return _sh(*argv)


def stop_command(layout: RemoteLayout, current: str) -> str:
    """Stop the daemon (a first release that failed has nothing to roll back to)."""
    return _sh("sh", layout.bootstrap(current), "stop", layout.install_dir)


def status_command(layout: RemoteLayout) -> str:
    """Print `current=<id>`, `previous=<id>` and the installed releases, one per line."""
    return _sh("sh", "-c", _STATUS_SCRIPT, "status", layout.install_dir)


# Read-only: works before the first deploy (no bootstrap there yet) and on any POSIX sh.
_STATUS_SCRIPT = (
    'd=$1; cur=$(readlink "$d/current" 2>/dev/null || true); echo "current=${cur##*/}"; '
    'prev=$(cat "$d/previous" 2>/dev/null || true); echo "previous=$prev"; '
    'for r in "$d"/releases/*/; do [ -f "$r.installed" ] && '
    'r=${r%/} && echo "release=${r##*/}"; done; true'
)


def parse_status(text: str) -> dict[str, object]:
    """The output of `status_command` as {current, previous, releases}."""
    out: dict[str, object] = {"current": None, "previous": None, "releases": []}
    releases: list[str] = []
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "release" and value:
            releases.append(value)
        elif key in ("current", "previous"):
            out[key] = value or None
    out["releases"] = sorted(releases)
    return out
