"""fleet/sysmetrics.py and mastercontrol/release.py: the system part of a heartbeat, the release.

The throttling decoder and the temperature pick are pure and table-tested; the readers run
against real files (and a real stand-in `vcgencmd` program) under tmp_path.
"""

from __future__ import annotations

import json
import stat
import sys
from collections import namedtuple
from pathlib import Path

import psutil
import pytest

from mastercontrol import release
from mastercontrol.fleet.sysmetrics import (
    THROTTLE_BITS,
    decode_throttled,
    pick_temperature,
    read_temperature,
    read_throttling,
    system_metrics,
)

Reading = namedtuple("Reading", "label current high critical")

FLAGS = [name for _bit, name in THROTTLE_BITS]


# --- throttling ---------------------------------------------------------------------------------


def test_a_pi_that_is_under_voltage_and_throttled_now_and_since_boot() -> None:
    # 0x50005: bits 0 and 2 (now) and 16 and 18 (since boot), the classic weak power supply.
    flags = decode_throttled("throttled=0x50005")
    assert flags is not None
    assert flags["raw"] == "0x50005"
    on = {name for name in FLAGS if flags[name]}
    assert on == {
        "under_voltage_now",
        "throttled_now",
        "under_voltage_occurred",
        "throttled_occurred",
    }


@pytest.mark.parametrize(
    ("bit", "name"),
    THROTTLE_BITS,
    ids=[name for _bit, name in THROTTLE_BITS],
)
def test_each_bit_sets_exactly_its_own_flag(bit: int, name: str) -> None:
    flags = decode_throttled(f"{1 << bit:x}")
    assert flags is not None
    assert [n for n in FLAGS if flags[n]] == [name]


@pytest.mark.parametrize("text", ["0", "0x0", "throttled=0x0\n", "  00000\n"])
def test_a_healthy_pi_has_every_flag_off(text: str) -> None:
    flags = decode_throttled(text)
    assert flags == {**dict.fromkeys(FLAGS, False), "raw": "0x0"}


@pytest.mark.parametrize("text", ["50005\n", "0x50005", "throttled=0x50005", "0X50005"])
def test_sysfs_and_vcgencmd_spellings_decode_alike(text: str) -> None:
    assert decode_throttled(text) == decode_throttled("throttled=0x50005")


def test_bits_outside_the_documented_ones_stay_in_raw_only() -> None:
    flags = decode_throttled("0xf0")  # bits 4-7: not documented
    assert flags is not None
    assert not any(flags[n] for n in FLAGS)
    assert flags["raw"] == "0xf0"


@pytest.mark.parametrize(
    "text", ["", "throttled=", 'error=2 error_msg="Command not registered"', "0x123456789", "-1"]
)
def test_text_that_is_no_throttled_word_decodes_to_none(text: str) -> None:
    assert decode_throttled(text) is None


def test_throttling_is_read_from_sysfs_first(tmp_path: Path) -> None:
    sysfs = tmp_path / "get_throttled"
    sysfs.write_text("50000\n")
    flags = read_throttling(sysfs=sysfs, vcgencmd=None)
    assert flags is not None and flags["raw"] == "0x50000"


def fake_vcgencmd(directory: Path, output: str, code: int = 0) -> Path:
    program = directory / "vcgencmd"
    program.write_text(f"#!/bin/sh\necho '{output}'\nexit {code}\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return program


def test_without_sysfs_vcgencmd_is_asked(tmp_path: Path) -> None:
    program = fake_vcgencmd(tmp_path, "throttled=0x4")
    flags = read_throttling(sysfs=tmp_path / "absent", vcgencmd=str(program))
    assert flags is not None and flags["throttled_now"] and flags["raw"] == "0x4"


def test_a_failing_vcgencmd_means_no_throttling_figure(tmp_path: Path) -> None:
    program = fake_vcgencmd(tmp_path, "VCHI initialization failed", code=255)
    assert read_throttling(sysfs=tmp_path / "absent", vcgencmd=str(program)) is None


def test_off_a_pi_there_is_no_throttling_figure(tmp_path: Path) -> None:
    assert read_throttling(sysfs=tmp_path / "absent", vcgencmd=None) is None
    missing = str(tmp_path / "no-such-vcgencmd")
    assert read_throttling(sysfs=tmp_path / "absent", vcgencmd=missing) is None


# --- temperature --------------------------------------------------------------------------------


def test_the_cpu_chip_wins_over_a_hotter_other_chip() -> None:
    chips = {
        "nvme": [Reading("Composite", 61.0, None, None)],
        "cpu_thermal": [Reading("", 48.312, None, None)],
    }
    assert pick_temperature(chips) == 48.3


def test_without_a_cpu_chip_the_hottest_plausible_reading_counts() -> None:
    chips = {
        "acpitz": [Reading("", 0.0 - 273.15, None, None), Reading("", 40.0, None, None)],
        "nvme": [Reading("", 44.5, None, None), Reading("", 200.0, None, None)],
    }
    assert pick_temperature(chips) == 44.5


def test_implausible_readings_only_mean_no_temperature() -> None:
    assert pick_temperature({"cpu_thermal": [Reading("", -273.0, None, None)]}) is None
    assert pick_temperature({}) is None


def write_zone(root: Path, n: int, millidegrees: str) -> None:
    zone = root / f"thermal_zone{n}"
    zone.mkdir(parents=True)
    (zone / "temp").write_text(millidegrees + "\n")


def test_without_psutil_sensors_the_thermal_zones_are_read(tmp_path: Path) -> None:
    write_zone(tmp_path, 0, "47850")
    write_zone(tmp_path, 1, "garbage")
    write_zone(tmp_path, 2, "39000")
    assert read_temperature(tmp_path, sensors=dict) == 47.9
    assert read_temperature(tmp_path, sensors=None) == 47.9


def test_psutil_sensors_come_before_the_thermal_zones(tmp_path: Path) -> None:
    write_zone(tmp_path, 0, "80000")
    chips = {"coretemp": [Reading("Package id 0", 55.0, 80.0, 100.0)]}
    assert read_temperature(tmp_path, sensors=lambda: chips) == 55.0


def test_no_sensor_at_all_is_none_and_a_failing_one_is_not_an_error(tmp_path: Path) -> None:
    def broken() -> dict[str, list[Reading]]:
        raise OSError("EIO")

    assert read_temperature(tmp_path, sensors=broken) is None


# --- the whole dict -----------------------------------------------------------------------------


def test_system_metrics_has_the_contract_shape_on_this_machine(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    m = system_metrics({"state": state, "log": tmp_path / "missing"})
    assert set(m) == {
        "cpu_percent",
        "load",
        "memory",
        "disk",
        "uptime_seconds",
        "temperature_c",
        "throttling",
    }
    assert isinstance(m["cpu_percent"], float) and 0.0 <= m["cpu_percent"] <= 100.0
    assert len(m["load"]) == 3 and all(x >= 0 for x in m["load"])
    mem = m["memory"]
    assert 0 < mem["available_bytes"] <= mem["total_bytes"]
    assert 0.0 <= mem["used_percent"] <= 100.0
    disk = m["disk"]["state"]
    assert disk["path"] == str(state)
    assert 0 < disk["free_bytes"] <= disk["total_bytes"]
    assert m["disk"]["log"] is None  # a directory that does not exist is reported as null
    assert m["uptime_seconds"] > 0
    assert m["temperature_c"] is None or isinstance(m["temperature_c"], float)
    json.dumps(m)  # JSON-ready as it is


def test_a_path_the_os_refuses_is_null_not_an_exception(tmp_path: Path) -> None:
    m = system_metrics({"bad": Path("nul\0byte"), "ok": tmp_path})
    assert m["disk"]["bad"] is None
    assert m["disk"]["ok"] is not None


def test_cpu_percent_does_not_sleep_to_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    # psutil.cpu_percent(interval>0) sleeps; the heartbeat must ask for the figure since the
    # previous call (interval=None), primed once at import.
    seen: list[object] = []

    def cpu_percent(interval: object = "unset") -> float:
        seen.append(interval)
        return 12.5

    monkeypatch.setattr(psutil, "cpu_percent", cpu_percent)
    assert system_metrics({})["cpu_percent"] == 12.5
    assert seen == [None]


# --- release ------------------------------------------------------------------------------------


def test_release_comes_from_the_environment_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "RELEASE").write_text("from-file\n")
    monkeypatch.setenv("MCTL_RELEASE", " 2026-12-01T10-00-00 \n")
    assert release.current_release(str(tmp_path / "venv")) == "2026-12-01T10-00-00"


def test_release_is_the_file_beside_the_venv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MCTL_RELEASE", raising=False)
    (tmp_path / "RELEASE").write_text("20261201-abc123\n")
    assert release.current_release(str(tmp_path / "venv")) == "20261201-abc123"
    monkeypatch.setenv("MCTL_RELEASE", "")  # empty: not set
    assert release.current_release(str(tmp_path / "venv")) == "20261201-abc123"


def test_release_of_the_running_venv_is_looked_up_beside_sys_prefix() -> None:
    assert release.release_file() == Path(sys.prefix).parent / "RELEASE"


def test_no_release_anywhere_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCTL_RELEASE", raising=False)
    assert release.current_release(str(tmp_path / "venv")) is None
    (tmp_path / "RELEASE").write_text("  \n")
    assert release.current_release(str(tmp_path / "venv")) is None


def test_an_oversized_release_file_is_cut_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MCTL_RELEASE", raising=False)
    (tmp_path / "RELEASE").write_text("x" * 100_000)
    value = release.current_release(str(tmp_path / "venv"))
    assert value is not None and len(value) <= 200


def test_a_release_path_that_cannot_be_read_is_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MCTL_RELEASE", raising=False)
    (tmp_path / "RELEASE").mkdir()  # unreadable as a file, even for root
    assert release.current_release(str(tmp_path / "venv")) is None
