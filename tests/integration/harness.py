"""A real mastercontrold in a temporary directory, driven through the real CLI and socket."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 20.0


def wait_for(
    predicate: Callable[[], Any], timeout: float = DEADLINE, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll `predicate` until it returns something truthy; fail with `what` after `timeout`."""
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}: {last!r}")


class Daemon:
    """One mastercontrold: config dir, db, socket and logs under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config_dir = root / "conf"
        self.db_path = root / "state" / "state.db"
        self.socket_path = root / "run" / "mc.sock"
        self.log_dir = root / "log"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    # -------------------------------------------------------------- config

    def write(self, name: str, text: str) -> Path:
        path = self.config_dir / name
        path.write_text(textwrap.dedent(text))
        return path

    def workload(self, name: str, func: str, **fields: Any) -> Path:
        """Write `<name>.yaml` for a function of tests.integration.workloads."""
        body: dict[str, Any] = {
            "name": name,
            "type": fields.pop("type", "service"),
            "module": "tests.integration.workloads",
            "entry_point": func,
        }
        body.update(fields)
        return self.write(f"{name}.yaml", json.dumps(body, indent=2))  # JSON is valid YAML

    def remove(self, name: str) -> None:
        (self.config_dir / f"{name}.yaml").unlink()

    # -------------------------------------------------------------- process

    def path_args(self) -> list[str]:
        return [
            "--config-dir",
            str(self.config_dir),
            "--db-path",
            str(self.db_path),
            "--socket-path",
            str(self.socket_path),
            "--log-dir",
            str(self.log_dir),
        ]

    def start(
        self,
        wait: bool = True,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        cgroup: Path | None = None,
        entry: bool = False,
    ) -> None:
        """`cgroup`: a cgroup v2 directory the daemon is started in (its own cgroup); `entry`:
        through mastercontrol.daemon.entry, as the installed `mastercontrold` runs (the keeper
        and the zygote forked before the daemon's imports)."""
        # A NOTIFY_SOCKET of whatever runs the tests must not reach the daemon; a test's may.
        full_env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        full_env.update(env or {})
        self.stderr_path = self.root / f"daemon-{time.monotonic_ns()}.stderr"
        # sh writes itself (0: the writer) into the cgroup, then becomes the daemon (same pid).
        enter = (
            ["sh", "-c", 'echo 0 >"$0/cgroup.procs" && exec "$@"', str(cgroup)] if cgroup else []
        )
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [
                    *enter,
                    sys.executable,
                    "-m",
                    "mastercontrol.daemon.entry" if entry else "mastercontrol.daemon.main",
                    *self.path_args(),
                    *args,
                ],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                env=full_env,
                start_new_session=True,
            )
        if wait:
            wait_for(self._answers, what="daemon to answer on its socket")

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.stderr()}")
        return self.ctl("list", "--json", check=False).returncode == 0

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except (OSError, AttributeError):
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def ctl(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "mastercontrol.ctl.main", *self.path_args(), *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"ctl {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def status(self, name: str) -> dict[str, Any]:
        out = self.ctl("status", name, "--json", check=False)
        if out.returncode not in (0, 3):
            raise AssertionError(f"status {name} failed: {out.stderr}")
        data: dict[str, Any] = json.loads(out.stdout)
        return data

    def workloads(self) -> dict[str, dict[str, Any]]:
        data = json.loads(self.ctl("list", "--json").stdout)
        return {w["name"]: w for w in data["workloads"]}

    def wait_state(self, name: str, *states: str, timeout: float = DEADLINE) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            st = self.status(name)
            return st if st["state"] in states else None

        result: dict[str, Any] = wait_for(check, timeout, 0.05, f"{name} to reach {states}")
        return result

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def cleanup(self) -> None:
        """Leave nothing behind: the daemon, and any process it started."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.stop(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        # The keeper's cleanup half names the daemon log (under root) on its command line:
        # killing it here would leave its daemon's cgroups behind on the test machine. It is
        # done within moments of its master's exit; wait for it (bounded), kill only then.
        keepers = [p for p, cmd in self._processes_under_root() if "keeper import cleanup" in cmd]
        psutil.wait_procs(keepers, timeout=5)
        for proc, _cmd in self._processes_under_root():
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass

    def _processes_under_root(self) -> list[tuple[psutil.Process, str]]:
        """Every process whose command line names this daemon's directory, with that line."""
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            try:
                cmd = " ".join(proc.info["cmdline"] or [])
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if str(self.root) in cmd:
                found.append((proc, cmd))
        return found


def pid_alive(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
