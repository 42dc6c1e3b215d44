"""The IPC command table: the one narrow interface through which the CLI and the API children
reach the master.

Only names in `Commands.TABLE` can be called; each handler checks its arguments and raises
IPCError with a stable code for anything wrong. Handlers see the master only through the
narrow `Master` protocol below (the loop implements it; this module never imports the loop).
They run inside the master loop and must not block (reading the tail of a log file is the one
bounded exception). Imports the stdlib and the package's own modules only.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from mastercontrol.daemon.configpush import ConfigPush
from mastercontrol.daemon.degraded import StateGuard
from mastercontrol.daemon.monitor import Monitor
from mastercontrol.daemon.supervisor import Supervisor
from mastercontrol.daemon.views import workload_view
from mastercontrol.engine.clock import Clock
from mastercontrol.errors import IPCError
from mastercontrol.ipc.protocol import COMMANDS, ErrorCode, parse_signal
from mastercontrol.logfile import SymlinkRefused, read_tail

MAX_LOG_LINES = 10000


def _name(args: dict[str, Any]) -> str:
    name = args.get("name")
    if not isinstance(name, str) or not name:
        raise IPCError(ErrorCode.BAD_REQUEST, "this command needs a string argument 'name'")
    return name


def _int(args: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise IPCError(ErrorCode.BAD_REQUEST, f"'{key}' must be an integer from {lo} to {hi}")
    return value


class Master(Protocol):
    """All that commands may touch of the master."""

    @property
    def supervisor(self) -> Supervisor: ...

    @property
    def monitor(self) -> Monitor: ...

    @property
    def guard(self) -> StateGuard: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def log_dir(self) -> Path: ...

    def reload(self, dry_run: bool) -> dict[str, Any]: ...

    def begin_shutdown(self) -> None: ...

    def daemon_view(self) -> dict[str, Any]: ...


class Commands:
    """Dispatches `cmd` names to handler methods; nothing outside TABLE is reachable."""

    TABLE = COMMANDS  # the protocol's list: the MasterClient façade has one method each

    def __init__(self, master: Master, config_push: ConfigPush) -> None:
        self.master = master
        self.config_push = config_push

    def dispatch(self, cmd: str, args: dict[str, Any]) -> Any:
        if cmd not in self.TABLE:
            raise IPCError(
                ErrorCode.UNKNOWN_COMMAND,
                f"unknown command {cmd!r}; known: {', '.join(self.TABLE)}",
            )
        handler = getattr(self, f"cmd_{cmd}")
        return handler(args)

    def _views(self) -> list[dict[str, Any]]:
        sup = self.master.supervisor
        now_mono = self.master.clock.monotonic()
        views = []
        for name in sorted(sup.workloads):
            view = workload_view(sup.workloads[name], now_mono)
            view["log_dropped_bytes"] = sup.log_dropped_bytes(name)
            views.append(view)
        return views

    def cmd_ping(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.master.daemon_view()

    def cmd_list(self, args: dict[str, Any]) -> dict[str, Any]:
        tag = args.get("tag")
        if tag is not None and not isinstance(tag, str):
            raise IPCError(ErrorCode.BAD_REQUEST, "'tag' must be a string")
        metrics = args.get("metrics", False)
        if not isinstance(metrics, bool):
            raise IPCError(ErrorCode.BAD_REQUEST, "'metrics' must be true or false")
        if metrics:
            self.master.monitor.refresh()
        views = self._views()
        if metrics:  # what /metrics shows besides the views, in the same round trip
            for view in views:
                view["last_duration"] = self.master.supervisor.last_duration(view["name"])
        if tag:
            views = [v for v in views if tag in v["tags"]]
        return {"daemon": self.master.daemon_view(), "workloads": views}

    def cmd_status(self, args: dict[str, Any]) -> dict[str, Any]:
        name = _name(args)
        sup = self.master.supervisor
        w = sup.get(name)
        self.master.monitor.refresh(name)
        view = workload_view(w, self.master.clock.monotonic())
        view["recent_runs"] = [asdict(r) for r in sup.recent_runs(name, limit=10)]
        view["log_path"] = str(self.master.log_dir / f"{name}.log")
        view["log_dropped_bytes"] = sup.log_dropped_bytes(name)  # also in list (_views)
        view["health"] = self.master.monitor.health_view(name)
        view["degraded"] = self.master.guard.view()
        return view

    def cmd_start(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.master.supervisor.start(_name(args))

    def cmd_stop(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.master.supervisor.stop(_name(args))

    def cmd_signal(self, args: dict[str, Any]) -> dict[str, Any]:
        name = _name(args)
        try:
            signum = parse_signal(args.get("signal"))
        except ValueError as exc:
            raise IPCError(ErrorCode.BAD_REQUEST, f"'signal': {exc}") from None
        return self.master.supervisor.signal(name, signum)

    def cmd_restart(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.master.supervisor.restart(_name(args))

    def cmd_reset(self, args: dict[str, Any]) -> dict[str, Any]:
        """A workload's run count from 0 (`name`), or the lost state accepted (`all: true`)."""
        every = args.get("all", False)
        if not isinstance(every, bool):
            raise IPCError(ErrorCode.BAD_REQUEST, "'all' must be true or false")
        self._not_shutting_down()
        if every:
            return self.master.guard.accept_all()
        return self.master.guard.reset(self.master.supervisor.get(_name(args)))

    def cmd_reload(self, args: dict[str, Any]) -> dict[str, Any]:
        dry_run = args.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise IPCError(ErrorCode.BAD_REQUEST, "'dry_run' must be true or false")
        return self.master.reload(dry_run)

    def cmd_down(self, args: dict[str, Any]) -> dict[str, Any]:
        self.master.begin_shutdown()
        return {"pid": self.master.daemon_view()["pid"], "stopping": True}

    def cmd_logs(self, args: dict[str, Any]) -> dict[str, Any]:
        name = _name(args)
        self.master.supervisor.get(name)
        lines = _int(args, "lines", 50, 0, MAX_LOG_LINES)
        path = self.master.log_dir / f"{name}.log"
        try:
            tail = read_tail(path, lines)
        except SymlinkRefused as exc:
            raise IPCError(ErrorCode.PERMISSION_DENIED, str(exc)) from None
        return {"name": name, "path": str(path), "lines": tail}

    def _reload(self) -> dict[str, Any]:
        return self.master.reload(dry_run=False)

    def _not_shutting_down(self) -> None:
        if self.master.supervisor.shutting_down:
            raise IPCError(ErrorCode.SHUTTING_DOWN, "the daemon is shutting down")

    def cmd_put_config(self, args: dict[str, Any]) -> dict[str, Any]:
        replace = args.get("replace", False)
        if not isinstance(replace, bool):
            raise IPCError(ErrorCode.BAD_REQUEST, "'replace' must be true or false")
        self._not_shutting_down()
        return self.config_push.push(args.get("files"), replace, self._reload)

    def cmd_rollback_config(self, args: dict[str, Any]) -> dict[str, Any]:
        self._not_shutting_down()
        return self.config_push.rollback(self._reload)
