"""A fleet on this machine for deploy tests: one real OpenSSH sshd per client on 127.0.0.1 (its
own sshd_config, host key and VERBOSE log, so each client's SSH sessions can be counted), each
client an install dir of its own whose daemon and client API `fab deploy` starts, and a project
(inventory.yaml, configs/, app/) that the tests edit between releases.

Every port is picked by binding port 0; every wait is bounded by a deadline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.integration.harness import REPO, wait_for

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
FAB = str(Path(sys.executable).parent / "fab")
TOKEN = "deploy-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30
    )
    return path


class Sshd:
    """`sshd -D -f cfg -E log` on 127.0.0.1:port; root logs in with the test's user key."""

    def __init__(self, root: Path, host_key: Path, authorized_keys: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host_key = host_key
        self.log = root / "sshd.log"
        self.config = root / "sshd_config"
        self.authorized_keys = authorized_keys
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        self.config.write_text(
            textwrap.dedent(f"""\
                Port {self.port}
                ListenAddress 127.0.0.1
                HostKey {self.host_key}
                PidFile {self.root}/sshd.pid
                AuthorizedKeysFile {self.authorized_keys}
                PubkeyAuthentication yes
                PasswordAuthentication no
                KbdInteractiveAuthentication no
                PermitRootLogin prohibit-password
                UsePAM no
                StrictModes no
                MaxStartups 50
                MaxSessions 50
                LogLevel VERBOSE
            """)
        )
        self.proc = subprocess.Popen([SSHD, "-D", "-f", str(self.config), "-E", str(self.log)])

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
                return False

        seen = self.connections()
        wait_for(listening, 15, what=f"sshd on port {self.port}")
        # The probe's connection is logged a moment later: wait, so counts taken now are stable.
        wait_for(lambda: self.connections() > seen, 15, what="sshd logging the probe")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def sessions(self) -> int:
        """Logins so far (sshd logs `Accepted publickey` once per authenticated connection)."""
        if not self.log.exists():
            return 0
        return len(re.findall(r"Accepted publickey", self.log.read_text(errors="replace")))

    def connections(self) -> int:
        """TCP connections sshd accepted (LogLevel VERBOSE: `Connection from`)."""
        if not self.log.exists():
            return 0
        return len(re.findall(r"Connection from", self.log.read_text(errors="replace")))


@dataclass
class Client:
    name: str
    install_dir: Path
    api_port: int
    sshd: Sshd

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def current(self) -> str | None:
        link = self.install_dir / "current"
        return os.readlink(link).rsplit("/", 1)[-1] if link.is_symlink() else None

    def workload(self, name: str = "svc") -> dict[str, Any]:
        """The workload as the client's own API reports it (state, pid, runs, ...)."""
        request = urllib.request.Request(
            f"{self.api_url}/api/v1/workloads/{name}", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            data: dict[str, Any] = json.load(reply)
        found: dict[str, Any] = data.get("workload", data)
        return found

    def log(self, workload: str = "svc") -> str:
        path = self.install_dir / "log" / f"{workload}.log"
        return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class Fleet:
    root: Path
    keys: dict[str, Path]
    wheelhouse_cache: Path
    clients: list[Client] = field(default_factory=list)
    # The central the clients send heartbeats to (nothing listens on port 9) and, when set, the
    # inventory's central_url/central_api_token; `api_urls=False` leaves api_url out of it.
    central_url: str = "http://127.0.0.1:9"
    central_token: str | None = None
    heartbeat_seconds: float = 60
    api_urls: bool = True

    @property
    def project(self) -> Path:
        return self.root / "project"

    @property
    def inventory(self) -> Path:
        return self.project / "inventory.yaml"

    def add_clients(self, n: int, **deploy: object) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        authorized = self.root / "authorized_keys"
        shutil.copy(self.keys["user"].with_suffix(".pub"), authorized)
        for i in range(n):
            name = f"pi-{i + 1}"
            sshd = Sshd(self.root / "sshd" / name, self.keys["host"], authorized)
            sshd.start()
            self.clients.append(Client(name, self.root / "clients" / name, free_port(), sshd))
        self.write_project(**deploy)

    def write_project(self, **deploy: object) -> None:
        (self.project / "configs").mkdir(parents=True, exist_ok=True)
        (self.project / "app").mkdir(parents=True, exist_ok=True)
        settings = {
            "batch": 2,
            "connect_timeout_seconds": 3,
            "health_deadline_seconds": 25,
            "min_healthy_seconds": 1.5,
            "config_dir": "configs",
            "app_dir": "app",
            "state_dir": "state",
            **deploy,
        }
        lines = ["defaults:", "  ssh_user: root", f"  ssh_key: {self.keys['user']}",
                 f"  python: {sys.executable}", f"  api_token: {TOKEN}"]  # fmt: skip
        if self.central_token is not None:
            lines += [f"  central_url: {self.central_url}",
                      f"  central_api_token: {self.central_token}"]  # fmt: skip
        lines.append("deploy:")
        lines += [f"  {k}: {v}" for k, v in settings.items()]
        lines.append("clients:")
        for c in self.clients:
            lines += [f"  - name: {c.name}", "    host: 127.0.0.1", f"    ssh_port: {c.sshd.port}",
                      f"    install_dir: {c.install_dir}"]  # fmt: skip
            if self.api_urls:
                lines.append(f"    api_url: {c.api_url}")
            own = self.project / "configs" / c.name
            own.mkdir(parents=True, exist_ok=True)
            (own / "daemon.yaml").write_text(
                textwrap.dedent(f"""\
                    fleet:
                      enabled: true
                      client_name: {c.name}
                      api_host: 127.0.0.1
                      api_port: {c.api_port}
                      api_token: {TOKEN}
                      central_api_url: {self.central_url}
                      heartbeat_interval_seconds: {self.heartbeat_seconds}
                """)
            )
        self.inventory.write_text("\n".join(lines) + "\n")
        if not (self.project / "configs" / "svc.yaml").exists():
            self.service("v1")

    def service(self, code: str, *, crash: bool = False) -> None:
        """The release's workload code: a service printing `code <code>` (or crashing)."""
        body = "raise SystemExit(3)" if crash else "while True:\n        time.sleep(1)"
        (self.project / "app" / "app_svc.py").write_text(
            f"import time\n\n\ndef run() -> None:\n    print('code {code}', flush=True)\n"
            f"    {body}\n"
        )
        (self.project / "configs" / "svc.yaml").write_text(
            "name: svc\ntype: service\nmodule: app_svc\nentry_point: run\n"
            "start_seconds: 1\nrestart_delay: 0.2\nrestart_delay_max: 0.5\n"
        )

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["MCTL_WHEELHOUSE_CACHE"] = str(self.wheelhouse_cache)
        env.pop("MCTL_CENTRAL_URL", None)
        env.pop("MCTL_INVENTORY", None)
        return env

    def fab(
        self, *args: str, timeout: float = 240, root: Path = REPO
    ) -> subprocess.CompletedProcess[str]:
        """`fab` with the fabfile of `root` (the project whose code the release is built from)."""
        argv = [FAB, "-r", str(root), *args]
        if not any(a.startswith("--inventory") for a in args):
            argv.append(f"--inventory={self.inventory}")
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=self.env(), cwd=self.root
        )

    def popen_fab(self, *args: str, root: Path = REPO) -> subprocess.Popen[str]:
        argv = [FAB, "-r", str(root), *args, f"--inventory={self.inventory}"]
        return subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env(),
            cwd=self.root,
        )  # fmt: skip

    def stop(self) -> None:
        """Every daemon the deploys started under this fleet's root, then every sshd."""
        mine = str(self.root / "clients")
        procs = []
        for p in psutil.process_iter(["cmdline"]):
            try:
                if any(mine in part for part in p.info["cmdline"] or ()):
                    procs.append(p)
            except (psutil.Error, TypeError):
                continue
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL) if p.pid == os.getpgid(p.pid) else p.kill()
            except (ProcessLookupError, PermissionError, psutil.Error):
                pass
        psutil.wait_procs(procs, timeout=10)
        for c in self.clients:
            c.sshd.stop()


# What a copy of the project needs to build its wheel and run its fabfile.
_PROJECT = ("mastercontrol", "contrib", "man", "docs/openapi", "setup.cfg", "pyproject.toml",
            "README.md", "fabfile.py")  # fmt: skip


def copy_project(dest: Path, source: Path = REPO) -> Path:
    """A copy of the project at `source` under `dest`, which a test or bench then changes."""
    for name in _PROJECT:
        src, to = source / name, dest / name
        to.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, to, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, to)
    return dest


def sessions(clients: list[Client]) -> dict[str, int]:
    return {c.name: c.sshd.sessions() for c in clients}


def last_code(client: Client) -> str | None:
    """The code tag the client's service printed last (`code <tag>` at each start)."""
    found = re.findall(r"code (\S+)", client.log())
    return found[-1] if found else None


def wait_code(client: Client, code: str, timeout: float = 30) -> None:
    wait_for(lambda: last_code(client) == code, timeout, what=f"{client.name} running code {code}")
