"""Temporary: the MasterClient façade over ctl's ControlClient until mastercontrol/ipc lands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mastercontrol.ctl.client import ControlClient


class MasterClient(ControlClient):
    def __init__(self, socket_path: Path, timeout: float = 30.0) -> None:
        super().__init__(socket_path, timeout)

    def ping(self) -> dict[str, Any]:
        return dict(self.call("ping"))

    def workloads(self, tag: str | None = None, metrics: bool = False) -> dict[str, Any]:
        args: dict[str, Any] = {"metrics": metrics}
        if tag is not None:
            args["tag"] = tag
        return dict(self.call("list", **args))

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.call("status", name=name))

    def start(self, name: str) -> dict[str, Any]:
        return dict(self.call("start", name=name))

    def stop(self, name: str) -> dict[str, Any]:
        return dict(self.call("stop", name=name))

    def restart(self, name: str) -> dict[str, Any]:
        return dict(self.call("restart", name=name))

    def logs(self, name: str, lines: int = 50) -> dict[str, Any]:
        return dict(self.call("logs", name=name, lines=lines))

    def reload(self, dry_run: bool = False) -> dict[str, Any]:
        return dict(self.call("reload", dry_run=dry_run))

    def put_config(self, files: dict[str, str], replace: bool = False) -> dict[str, Any]:
        return dict(self.call("put_config", files=files, replace=replace))

    def rollback_config(self) -> dict[str, Any]:
        return dict(self.call("rollback_config"))
