"""The IPC command table: the one narrow interface through which the CLI and the API children
reach the master.

Only names in `Commands.TABLE` can be called; each handler checks its arguments and raises
IPCError with a stable code for anything wrong. Handlers run inside the master loop and must
not block (reading the tail of a log file is the one bounded exception). Imports the stdlib and
the package's own modules only.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from mastercontrol.daemon.configpush import ConfigPush
from mastercontrol.daemon.views import workload_view
from mastercontrol.errors import IPCError
from mastercontrol.ipc.protocol import COMMANDS, ErrorCode
from mastercontrol.logfile import SymlinkRefused, read_tail

if TYPE_CHECKING:
    from mastercontrol.daemon.loop import MasterLoop

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


class Commands:
    """Dispatches `cmd` names to handler methods; nothing outside TABLE is reachable."""

    TABLE = COMMANDS  # the protocol's list: the MasterClient façade has one method each

    def __init__(self, loop: MasterLoop) -> None:
        self.loop = loop
        self.config_push = ConfigPush(loop.config_dir, loop.state_dir, loop.load_config)

    def dispatch(self, cmd: str, args: dict[str, Any]) -> Any:
        if cmd not in self.TABLE:
            raise IPCError(
                ErrorCode.UNKNOWN_COMMAND,
                f"unknown command {cmd!r}; known: {', '.join(self.TABLE)}",
            )
        handler = getattr(self, f"cmd_{cmd}")
        return handler(args)

    def _views(self) -> list[dict[str, Any]]:
        sup = self.loop.supervisor
        now_mono = self.loop.clock.monotonic()
        return [workload_view(sup.workloads[n], now_mono) for n in sorted(sup.workloads)]

    def cmd_ping(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.loop.daemon_view()

    def cmd_list(self, args: dict[str, Any]) -> dict[str, Any]:
        tag = args.get("tag")
        if tag is not None and not isinstance(tag, str):
            raise IPCError(ErrorCode.BAD_REQUEST, "'tag' must be a string")
        metrics = args.get("metrics", False)
        if not isinstance(metrics, bool):
            raise IPCError(ErrorCode.BAD_REQUEST, "'metrics' must be true or false")
        if metrics:
            self.loop.monitor.refresh()
        views = self._views()
        if tag:
            views = [v for v in views if tag in v["tags"]]
        return {"daemon": self.loop.daemon_view(), "workloads": views}

    def cmd_status(self, args: dict[str, Any]) -> dict[str, Any]:
        name = _name(args)
        sup = self.loop.supervisor
        w = sup.get(name)
        self.loop.monitor.refresh(name)
        view = workload_view(w, self.loop.clock.monotonic())
        view["recent_runs"] = [asdict(r) for r in sup.store.recent_runs(name, limit=10)]
        view["log_path"] = str(self.loop.log_dir / f"{name}.log")
        log = sup.outputs.writer(name)
        view["log_dropped_bytes"] = log.dropped_bytes if log is not None else 0
        view["health"] = self.loop.monitor.health_view(name)
        return view

    def cmd_start(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.loop.supervisor.start(_name(args))

    def cmd_stop(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.loop.supervisor.stop(_name(args))

    def cmd_restart(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.loop.supervisor.restart(_name(args))

    def cmd_reload(self, args: dict[str, Any]) -> dict[str, Any]:
        dry_run = args.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise IPCError(ErrorCode.BAD_REQUEST, "'dry_run' must be true or false")
        return self.loop.reload(dry_run)

    def cmd_down(self, args: dict[str, Any]) -> dict[str, Any]:
        self.loop.begin_shutdown()
        return {"pid": self.loop.daemon_view()["pid"], "stopping": True}

    def cmd_logs(self, args: dict[str, Any]) -> dict[str, Any]:
        name = _name(args)
        self.loop.supervisor.get(name)
        lines = _int(args, "lines", 50, 0, MAX_LOG_LINES)
        path = self.loop.log_dir / f"{name}.log"
        try:
            tail = read_tail(path, lines)
        except SymlinkRefused as exc:
            raise IPCError(ErrorCode.PERMISSION_DENIED, str(exc)) from None
        return {"name": name, "path": str(path), "lines": tail}

    def _reload(self) -> dict[str, Any]:
        return self.loop.reload(dry_run=False)

    def _not_shutting_down(self) -> None:
        if self.loop.supervisor.shutting_down:
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
