"""What the deployer does to one client over SSH (update, roll back, ask its status), and the
parallel runner for a wave.

Each step connects first (ssh.connect: host key checked before any command), then runs only the
quoted commands of layout.py and rsync. Failures come back as plan.Result, never as exceptions,
so one bad client cannot take its wave's bookkeeping down with it. Worker threads only talk to
their own client; the journal is written by the caller's thread.

Fabric is used here and in ssh.py; must not import the daemon or the API.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from fabric import Connection
from paramiko import SSHException

from mastercontrol.config.model import InventoryClient
from mastercontrol.deploy import layout
from mastercontrol.deploy.plan import Outcome, Result
from mastercontrol.deploy.ssh import ConnectFailed, Reach, SshSettings, connect, rsync_argv

# A session that dies mid-command: socket errors, EOF, or paramiko's own (not an OSError).
LOST = (OSError, EOFError, SSHException)

T = TypeVar("T")
R = TypeVar("R")

# Exit codes of bootstrap.sh after which `current` has been switched: a rollback is needed.
_SWITCHED = frozenset((0, 6))
# Its exits before any switch (the client runs what it ran before); any other code (1 from a
# failing command, 255 from ssh) leaves it unknown.
_BEFORE_SWITCH = frozenset((2, 3, 4, 5, 7, 8))


@dataclass(frozen=True)
class Remote:
    """How to reach and act on clients: SSH settings and the release policy."""

    ssh: SshSettings
    keep_releases: int
    unreachable_fails: bool = False

    def _not_reached(self, client: InventoryClient, exc: ConnectFailed) -> Result:
        if exc.reach is Reach.UNREACHABLE and not self.unreachable_fails:
            return Result(client.name, Outcome.PENDING, str(exc))
        return Result(client.name, Outcome.FAILED, str(exc))

    def status(self, conn: Connection, client: InventoryClient) -> dict[str, Any]:
        res = conn.run(layout.status_command(layout.RemoteLayout(client.install_dir)))
        return layout.parse_status(res.stdout)

    def update(self, client: InventoryClient, release_id: str, staged: Path) -> Result:
        """Copy the staged release and run its bootstrap (validate, switch, restart)."""
        where = layout.RemoteLayout(client.install_dir)
        try:
            conn = connect(client, self.ssh)
        except ConnectFailed as exc:
            return self._not_reached(client, exc)
        try:
            st = self.status(conn, client)
            current = st["current"]
            previous = st["previous"] if current == release_id else current
            prev = previous if isinstance(previous, str) else None
            why = self._transfer(conn, client, where, release_id, staged)
            if why is not None:
                return Result(client.name, Outcome.FAILED, why, prev, before_switch=True)
            cmd = layout.install_command(where, release_id, self.keep_releases, client.python)
            done = conn.run(cmd)
        except LOST as exc:
            return Result(client.name, Outcome.FAILED, f"connection lost: {exc}")
        finally:
            conn.close()
        if done.exited == 0:
            return Result(client.name, Outcome.UPDATED, "switched", prev, switched=True)
        what = layout.BOOTSTRAP_EXITS.get(done.exited, f"bootstrap exited {done.exited}")
        detail = done.stderr.strip()[-800:]
        reason = f"{what}: {detail}" if detail else what
        return Result(client.name, Outcome.FAILED, reason, prev, switched=done.exited in _SWITCHED,
                      before_switch=done.exited in _BEFORE_SWITCH)  # fmt: skip

    def rollback(self, client: InventoryClient, target: str | None = None) -> Result:
        """Switch `client` back to `target` (default: its previous release) and restart it."""
        where = layout.RemoteLayout(client.install_dir)
        try:
            conn = connect(client, self.ssh)
        except ConnectFailed as exc:
            return self._not_reached(client, exc)
        try:
            st = self.status(conn, client)
            current = st["current"]
            if not isinstance(current, str):
                return Result(client.name, Outcome.FAILED, "no release installed")
            if target is None and st["previous"] is None:
                done = conn.run(layout.stop_command(where, current))
                reason = "no earlier release: daemon stopped" if done.ok else done.stderr.strip()
                return Result(client.name, Outcome.ROLLED_BACK if done.ok else Outcome.FAILED,
                              reason, None)  # fmt: skip
            done = conn.run(layout.rollback_command(where, current, target))
        except LOST as exc:
            return Result(client.name, Outcome.FAILED, f"connection lost: {exc}")
        finally:
            conn.close()
        if done.ok:
            back = done.stdout.strip().rsplit(" ", 1)[-1]
            return Result(client.name, Outcome.ROLLED_BACK, f"back on {back}", back)
        what = layout.BOOTSTRAP_EXITS.get(done.exited, f"bootstrap exited {done.exited}")
        return Result(client.name, Outcome.FAILED, f"rollback: {what}: {done.stderr.strip()}")

    def ask_status(self, client: InventoryClient) -> dict[str, Any]:
        """{current, previous, releases} or {error}."""
        try:
            conn = connect(client, self.ssh)
        except ConnectFailed as exc:
            return {"error": str(exc)}
        try:
            return self.status(conn, client)
        except LOST as exc:
            return {"error": f"connection lost: {exc}"}
        finally:
            conn.close()

    def copy(self, client: InventoryClient, release_id: str, staged: Path) -> Result:
        """`fab sync`: copy the staged release only; nothing is switched or restarted."""
        where = layout.RemoteLayout(client.install_dir)
        try:
            conn = connect(client, self.ssh)
        except ConnectFailed as exc:
            return self._not_reached(client, exc)
        try:
            why = self._transfer(conn, client, where, release_id, staged)
        except LOST as exc:
            return Result(client.name, Outcome.FAILED, f"connection lost: {exc}")
        finally:
            conn.close()
        if why is not None:
            return Result(client.name, Outcome.FAILED, why)
        return Result(client.name, Outcome.UPDATED, f"copied to {where.release(release_id)}")

    def _transfer(
        self, conn: Connection, client: InventoryClient, where: layout.RemoteLayout,
        release_id: str, staged: Path,
    ) -> str | None:  # fmt: skip
        """Make the release dir and rsync the staged release into it; why not, or None."""
        made = conn.run(layout.prepare_command(where, release_id))
        if made.failed:
            return f"mkdir: {made.stderr.strip()}"
        argv = rsync_argv(staged, client, where.release(release_id), self.ssh)
        copied = subprocess.run(argv, capture_output=True, text=True, check=False)
        if copied.returncode != 0:
            return f"rsync failed ({copied.returncode}): {copied.stderr.strip()[-500:]}"
        return None


def parallel(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """fn over items, one thread each, results in order.

    Daemon threads (not a ThreadPoolExecutor, whose threads the interpreter joins at exit): on
    Ctrl-C the main thread records the interruption and exits without waiting for remote
    commands; the bootstrap's own lock makes a `--resume` wait for a command still running.
    """
    results: list[R | None] = [None] * len(items)
    errors: list[BaseException] = []

    def work(i: int, item: T) -> None:
        try:
            results[i] = fn(item)
        except BaseException as exc:  # reported to the caller, not lost in a thread
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(i, it), daemon=True) for i, it in enumerate(items)
    ]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.2)  # short joins: a SIGINT reaches the main thread promptly
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]
