"""This device's system metrics for heartbeats and the client API, in one JSON-ready dict.

`system_metrics()` reports CPU, load, memory, the disks of given directories, uptime, the
SoC temperature and, on a Raspberry Pi, the firmware's throttling/under-voltage flags. A figure
the machine does not expose is None; the function never raises and never blocks (the CPU
percent is psutil's figure since the previous call, primed once at import, not a sampling
sleep).

Raspberry Pi throttling comes from the firmware's `get_throttled` word: the kernel exposes it at
`/sys/devices/platform/soc/soc:firmware/get_throttled` (hex digits, e.g. `50005`) and
`vcgencmd get_throttled` prints it as `throttled=0x50005`. Bits 0-3 are conditions now, bits
16-19 the same conditions "has occurred since boot" (see `THROTTLE_BITS`).

Imports only the standard library and psutil; must not import daemon/, child/, api/, bottle or
waitress.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import psutil

_T = TypeVar("_T")

THROTTLED_SYSFS = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")
THERMAL_ROOT = Path("/sys/class/thermal")
VCGENCMD_TIMEOUT = 2.0  # seconds; vcgencmd answers in milliseconds on a healthy Pi

# Bit number of the firmware's get_throttled word -> key in the "throttling" dict.
THROTTLE_BITS: tuple[tuple[int, str], ...] = (
    (0, "under_voltage_now"),
    (1, "freq_capped_now"),
    (2, "throttled_now"),
    (3, "soft_temp_limit_now"),
    (16, "under_voltage_occurred"),
    (17, "freq_capped_occurred"),
    (18, "throttled_occurred"),
    (19, "soft_temp_limit_occurred"),
)
_HEX_WORD = re.compile(r"^(?:throttled=)?(?:0x)?([0-9a-f]{1,8})$", re.IGNORECASE)

# psutil sensor chips that measure the CPU/SoC, by a part of their name (Raspberry Pi
# cpu_thermal, Intel coretemp, AMD k10temp, other ARM boards soc_thermal...).
_CPU_CHIP_HINTS = ("cpu", "soc", "coretemp", "k10temp", "x86_pkg")
_PLAUSIBLE_C = (-40.0, 150.0)  # outside: a missing or broken sensor (0, -273...), not a board
# Absent on platforms where psutil has no sensors (macOS, BSD).
_PSUTIL_SENSORS: Callable[[], Mapping[str, Sequence[Any]]] | None = getattr(
    psutil, "sensors_temperatures", None
)


def decode_throttled(text: str) -> dict[str, Any] | None:
    """The flags of a get_throttled word (`50005`, `0x50005` or `throttled=0x50005`).

    Returns {flag: bool, ..., "raw": "0x50005"}; None for text that is not such a word.
    """
    match = _HEX_WORD.match(text.strip())
    if match is None:
        return None
    word = int(match.group(1), 16)
    flags: dict[str, Any] = {name: bool(word >> bit & 1) for bit, name in THROTTLE_BITS}
    flags["raw"] = f"0x{word:x}"
    return flags


def read_throttling(
    sysfs: Path = THROTTLED_SYSFS, vcgencmd: str | None = "vcgencmd"
) -> dict[str, Any] | None:
    """The decoded throttling flags from sysfs, else from `vcgencmd`; None off a Pi."""
    try:
        return decode_throttled(sysfs.read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError):
        pass
    program = shutil.which(vcgencmd) if vcgencmd else None
    if program is None:
        return None
    try:
        done = subprocess.run(
            [program, "get_throttled"],
            capture_output=True,
            text=True,
            timeout=VCGENCMD_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return decode_throttled(done.stdout) if done.returncode == 0 else None


def pick_temperature(chips: Mapping[str, Sequence[Any]]) -> float | None:
    """The CPU/SoC reading out of psutil.sensors_temperatures(): the hottest plausible reading
    of a CPU/SoC chip, else of any chip; None without a plausible one."""
    cpu_chips = [n for n in chips if any(hint in n.lower() for hint in _CPU_CHIP_HINTS)]
    for group in (cpu_chips, list(chips)):
        value = _hottest(r.current for name in group for r in chips[name])
        if value is not None:
            return value
    return None


def read_temperature(
    thermal_root: Path = THERMAL_ROOT,
    sensors: Callable[[], Mapping[str, Sequence[Any]]] | None = _PSUTIL_SENSORS,
) -> float | None:
    """The CPU/SoC temperature in °C: psutil's sensors, else the hottest thermal zone."""
    value = pick_temperature(_try(sensors) or {}) if sensors is not None else None
    if value is not None:
        return value
    zones: list[float] = []
    for temp_file in sorted(thermal_root.glob("thermal_zone*/temp")):
        try:
            zones.append(int(temp_file.read_text(encoding="ascii")) / 1000.0)  # millidegrees
        except (OSError, ValueError, UnicodeDecodeError):
            continue
    return _hottest(zones)


def _hottest(readings: Iterable[float | None]) -> float | None:
    low, high = _PLAUSIBLE_C
    good = [float(v) for v in readings if v is not None and low < v < high]
    return round(max(good), 1) if good else None


def disk_usage(path: Path) -> dict[str, Any] | None:
    """Size and free space of the filesystem holding `path`; None if it cannot be read."""
    try:
        usage = psutil.disk_usage(os.fspath(path))
    except OSError:
        return None
    return {
        "path": os.fspath(path),
        "total_bytes": usage.total,
        "free_bytes": usage.free,
        "used_percent": usage.percent,
    }


def _memory() -> dict[str, Any]:
    vm = psutil.virtual_memory()
    return {"total_bytes": vm.total, "available_bytes": vm.available, "used_percent": vm.percent}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _uptime() -> float:
    return round(max(0.0, time.time() - psutil.boot_time()), 1)


def _cpu_percent() -> float:
    return float(psutil.cpu_percent(interval=None))


def _try(read: Callable[[], _T]) -> _T | None:
    """`read()`, or None when the machine does not give that figure (a missing /proc file, a
    container without permission, a psutil quirk): metrics must never take a heartbeat down."""
    try:
        return read()
    except Exception:  # any failure of one figure means "not available", nothing more
        return None


def system_metrics(disk_paths: Mapping[str, Path]) -> dict[str, Any]:
    """The host now; `disk_paths` maps a label ("state", "log") to a directory to report."""
    return {
        "cpu_percent": _try(_cpu_percent),
        "load": _try(_load),
        "memory": _try(_memory),
        "disk": {label: _try(partial(disk_usage, path)) for label, path in disk_paths.items()},
        "uptime_seconds": _try(_uptime),
        "temperature_c": _try(read_temperature),
        "throttling": _try(read_throttling),
    }


# Prime psutil's CPU counters: the first cpu_percent(interval=None) call only sets a baseline
# (it returns 0.0), so the first real report then covers the time since import.
_try(_cpu_percent)
