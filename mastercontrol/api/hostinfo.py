"""Stand-in for mastercontrol/fleet/sysmetrics.py and release.py until helper "hb" lands them.

Same signatures and shapes as the agreed contract; replaced by imports from mastercontrol.fleet
as soon as those exist. Imports the standard library and psutil.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil


def current_release() -> str | None:
    env = os.environ.get("MCTL_RELEASE")
    if env:
        return env
    try:
        return (Path(sys.prefix).parent / "RELEASE").read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def system_metrics(disk_paths: Mapping[str, Path]) -> dict[str, Any]:
    vm = psutil.virtual_memory()
    disk: dict[str, Any] = {}
    for label, path in disk_paths.items():
        try:
            du = psutil.disk_usage(os.fspath(path))
        except OSError:
            disk[label] = None
            continue
        disk[label] = {
            "path": str(path),
            "total_bytes": du.total,
            "free_bytes": du.free,
            "used_percent": du.percent,
        }
    return {
        "cpu_percent": psutil.cpu_percent(interval=None),
        "load": list(os.getloadavg()),
        "memory": {
            "total_bytes": vm.total,
            "available_bytes": vm.available,
            "used_percent": vm.percent,
        },
        "disk": disk,
        "uptime_seconds": round(time.time() - psutil.boot_time(), 1),
        "temperature_c": None,
        "throttling": None,
    }
