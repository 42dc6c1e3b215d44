"""One driver per supervisor: write its config, start it, read its state, name its commands.

Both drivers take the same `Spec` list and expose the same methods, so a scenario is written
once and run on each. Master Control is read over its JSON-lines socket, supervisord over
XML-RPC on its Unix socket (stdlib xmlrpc with a Unix-socket transport, so the bench needs no
supervisor import). Imports the standard library, psutil (via bench.procs) and
mastercontrol.ipc.client; no daemon internals.
"""

from __future__ import annotations

import http.client
import json
import os
import shlex
import socket
import subprocess
import sys
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench import procs
from mastercontrol.ipc.client import MasterClient

ROOT = Path(__file__).resolve().parent.parent
MC_BIN = ROOT / ".venv" / "bin"
SV_VENV = ROOT / "bench" / ".venv-supervisor"
# Workloads of both tools run on the project's interpreter, so the workload code and the
# Python that runs it are identical; only the supervisor differs.
WORKLOAD_PYTHON = MC_BIN / "python"


@dataclass(frozen=True)
class Spec:
    """One workload: a function of bench.workloads and its keyword arguments."""

    name: str
    func: str  # "idle" or "churn"
    params: dict[str, Any] = field(default_factory=dict)
    argv: tuple[str, ...] | None = None  # set: a `command:` program exec'd instead of func


class Driver(Protocol):
    label: str
    master_pid: int

    def start(self, specs: list[Spec]) -> None: ...
    def states(self) -> dict[str, tuple[str, int | None]]: ...
    def ctl_list_argv(self) -> list[str]: ...
    def down_argv(self) -> list[str]: ...
    def wait_exit(self, timeout: float) -> int | None: ...
    def cleanup(self) -> None: ...


class _Base:
    label = ""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.master_pid = 0

    def _launch(self, argv: list[str]) -> None:
        out = (self.dir / "daemon.out").open("ab")
        # Own session: a Ctrl-C in the terminal reaches only the bench, which then cleans up.
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            start_new_session=True,
        )  # fmt: skip
        out.close()
        self.master_pid = self.proc.pid

    def wait_exit(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            procs.kill_tree(self.proc.pid)
            self.wait_exit(5.0)
        procs.sweep(str(self.dir))


class MasterControl(_Base):
    label = "Master Control"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.paths = [
            "--config-dir", str(self.dir / "conf"),
            "--db-path", str(self.dir / "state.db"),
            "--socket-path", str(self.dir / "mc.sock"),
            "--log-dir", str(self.dir / "log"),
        ]  # fmt: skip
        self.client = MasterClient(self.dir / "mc.sock", timeout=10.0)

    def start(self, specs: list[Spec]) -> None:
        conf = self.dir / "conf"
        conf.mkdir(exist_ok=True)
        (self.dir / "log").mkdir(exist_ok=True)
        for s in specs:
            # JSON is YAML: no quoting questions for paths in params.
            what: dict[str, Any] = (
                {"command": list(s.argv)}
                if s.argv is not None
                else {"module": "bench.workloads", "entry_point": s.func, "params": s.params}
            )
            doc = {
                "name": s.name,
                "type": "service",
                **what,
                "restart_delay": 0,  # restart at once, like supervisord's immediate respawn
                "start_seconds": 0,  # like startsecs=0: an exit is never a quick failure
            }
            (conf / f"{s.name}.yaml").write_text(json.dumps(doc) + "\n")
        self._launch([str(MC_BIN / "mastercontrold"), *self.paths])

    def states(self) -> dict[str, tuple[str, int | None]]:
        try:
            result = self.client.workloads()
        except Exception:  # not up yet, or busy: the caller polls again
            return {}
        return {w["name"]: (str(w["state"]), w["pid"]) for w in result["workloads"]}

    def ctl_list_argv(self) -> list[str]:
        return [str(MC_BIN / "mastercontrol-ctl"), *self.paths, "list"]

    def down_argv(self) -> list[str]:
        return [str(MC_BIN / "mastercontrol-ctl"), *self.paths, "down"]


class Floor(_Base):
    """bench/floor.py: posix_spawn + waitpid by pid, restart on exit; `command:` specs only."""

    label = "floor"

    def __init__(self, workdir: Path, setpriv: bool = False) -> None:
        super().__init__(workdir)
        self.setpriv = setpriv  # exec each program through setpriv --pdeathsig, as MC does

    def start(self, specs: list[Spec]) -> None:
        (self.dir / "log").mkdir(exist_ok=True)
        spec = self.dir / "floor.json"
        spec.write_text(json.dumps([{"name": s.name, "argv": list(s.argv or ())} for s in specs]))
        self._launch([
            str(MC_BIN / "python"), str(ROOT / "bench" / "floor.py"), "--spec", str(spec),
            "--socket", str(self.dir / "floor.sock"), "--log-dir", str(self.dir / "log"),
            *(["--setpriv"] if self.setpriv else []),
        ])  # fmt: skip

    def states(self) -> dict[str, tuple[str, int | None]]:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(10.0)
                sock.connect(str(self.dir / "floor.sock"))
                data = b"".join(iter(lambda: sock.recv(65536), b""))
            pids: dict[str, int] = json.loads(data)
        except (OSError, ValueError):  # not up yet: the caller polls again
            return {}
        return {name: ("RUNNING" if pid else "STARTING", pid or None) for name, pid in pids.items()}

    def ctl_list_argv(self) -> list[str]:
        raise NotImplementedError("the floor has no control command")

    def down_argv(self) -> list[str]:
        return ["kill", "-TERM", str(self.master_pid)]


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10.0)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixHTTPConnection(self.path)


SV_CONF = """\
[unix_http_server]
file={dir}/sv.sock

[supervisord]
nodaemon=true
logfile={dir}/supervisord.log
pidfile={dir}/supervisord.pid
childlogdir={dir}/log
minfds=4096

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{dir}/sv.sock
"""

# startsecs=0: RUNNING at once and an exit is never a quick failure (as start_seconds: 0);
# autorestart=true: respawn after every exit (as run_mode forever). supervisord has no restart
# delay to set: it respawns an EXITED program on its next loop pass.
SV_PROGRAM = """
[program:{name}]
command={command}
directory={root}
autostart=true
autorestart=true
startsecs=0
redirect_stderr=true
stdout_logfile={dir}/log/{name}.log
"""


class Supervisord(_Base):
    label = "supervisord"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.conf = self.dir / "supervisord.conf"
        self.server = xmlrpc.client.ServerProxy(
            "http://localhost", transport=_UnixTransport(str(self.dir / "sv.sock"))
        )

    def start(self, specs: list[Spec]) -> None:
        (self.dir / "log").mkdir(exist_ok=True)
        parts = [SV_CONF.format(dir=self.dir)]
        for s in specs:
            # repr() of a dict of str/float is a valid Python literal; supervisord splits the
            # command like a shell, so the double quotes keep it one argument.
            command = (
                shlex.join(s.argv)
                if s.argv is not None
                else f'{WORKLOAD_PYTHON} -c "import bench.workloads as w; '
                f'w.{s.func}(**{s.params!r})"'
            )
            parts.append(
                SV_PROGRAM.format(
                    name=s.name,
                    command=command,
                    root=ROOT,
                    dir=self.dir,
                )
            )
        # One group for all: supervisord stops groups one after another (waiting for each to
        # be down), so 200 one-program groups take minutes to shut down; a group stops its
        # programs in parallel. This is the configuration a supervisord user would choose.
        parts.append(f"\n[group:bench]\nprograms={','.join(s.name for s in specs)}\n")
        self.conf.write_text("".join(parts))
        self._launch([str(SV_VENV / "bin" / "supervisord"), "-c", str(self.conf)])

    def states(self) -> dict[str, tuple[str, int | None]]:
        try:
            infos: Any = self.server.supervisor.getAllProcessInfo()
        except Exception:  # not up yet, or busy: the caller polls again
            return {}
        return {i["name"]: (str(i["statename"]), int(i["pid"]) or None) for i in infos}

    def ctl_list_argv(self) -> list[str]:
        return [str(SV_VENV / "bin" / "supervisorctl"), "-c", str(self.conf), "status"]

    def down_argv(self) -> list[str]:
        return [str(SV_VENV / "bin" / "supervisorctl"), "-c", str(self.conf), "shutdown"]


def ensure_supervisor(version_spec: str = "supervisor>=4.3,<4.4") -> str:
    """Create bench/.venv-supervisor with supervisor 4.3.x unless it is there; its version."""
    python = SV_VENV / "bin" / "python"
    probe = [str(python), "-c", "import supervisor.options as o; print(o.VERSION)"]
    if python.exists():
        done = subprocess.run(probe, capture_output=True, text=True, check=False)
        if done.returncode == 0 and done.stdout.startswith("4.3"):
            return done.stdout.strip()
    print(f"installing {version_spec} into {SV_VENV} ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(SV_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", version_spec],
        check=True, env={**os.environ, "PIP_NO_INPUT": "1"},
    )  # fmt: skip
    return subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip()
