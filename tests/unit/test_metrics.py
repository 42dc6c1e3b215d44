"""Process and system sampling against real processes; RssWatch as pure logic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import psutil
import pytest

from mastercontrol.daemon.metrics import (
    ProcessSampler,
    ProcSample,
    RssWatch,
    pick_temperature,
    read_temperature,
    system_sample,
)

T = TypeVar("T")
DEADLINE = 20.0


def wait_until(fn: Callable[[], T | None], what: str, timeout: float = DEADLINE) -> T:
    """Poll fn until it returns something truthy, bounded in time and count."""
    end = time.monotonic() + timeout
    for _ in range(int(timeout / 0.02) + 1):
        value = fn()
        if value:
            return value
        if time.monotonic() > end:
            break
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait(timeout=DEADLINE)


def test_sample_of_a_live_child_reports_memory_threads_and_fds(
    sleeper: subprocess.Popen[bytes],
) -> None:
    sampler = ProcessSampler()
    sample = sampler.sample(sleeper.pid)
    assert sample is not None
    assert sample.pid == sleeper.pid
    assert sample.rss_bytes > 0
    assert sample.threads >= 1
    assert sample.fds >= 3  # stdin/stdout/stderr at least
    assert sample.processes == 1
    assert abs(sample.create_time - psutil.Process(sleeper.pid).create_time()) < 1.0


def test_sample_returns_none_once_the_child_has_exited_and_forgets_it(
    sleeper: subprocess.Popen[bytes],
) -> None:
    sampler = ProcessSampler()
    assert sampler.sample(sleeper.pid) is not None
    sleeper.kill()
    sleeper.wait(timeout=DEADLINE)
    assert sampler.sample(sleeper.pid) is None
    assert len(sampler) == 0


def test_sample_of_an_unreaped_zombie_is_none() -> None:
    proc = subprocess.Popen(["true"])
    try:
        wait_until(
            lambda: psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE, "true to exit"
        )
        assert ProcessSampler().sample(proc.pid) is None
    finally:
        proc.wait(timeout=DEADLINE)


def test_cpu_percent_diffs_against_the_previous_sample_of_the_same_pid() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        sampler = ProcessSampler()
        first = sampler.sample(busy.pid)
        assert first is not None
        assert first.cpu_percent == 0.0  # no baseline yet

        def busy_seen() -> ProcSample | None:
            time.sleep(0.1)
            s = sampler.sample(busy.pid)
            return s if s is not None and s.cpu_percent > 5.0 else None

        wait_until(busy_seen, "a busy loop to show cpu use")
    finally:
        busy.kill()
        busy.wait(timeout=DEADLINE)


def test_sample_tree_sums_the_children_of_a_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 60 & echo $! >> {pids}; sleep 60 & echo $! >> {pids}; wait"
    shell = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    try:
        wait_until(lambda: pids.exists() and len(pids.read_text().split()) == 2, "two sleeps")
        sampler = ProcessSampler()

        def tree_of(count: int) -> ProcSample | None:
            sample = sampler.sample_tree(shell.pid)
            return sample if sample is not None and sample.processes == count else None

        tree = wait_until(lambda: tree_of(3), "the shell and two sleeps")
        alone = sampler.sample(shell.pid)
        assert alone is not None
        assert tree.rss_bytes > alone.rss_bytes
        assert tree.threads >= 3
        assert tree.pid == shell.pid
        assert len(sampler) == 3  # the root and both children keep their cpu baselines

        first_child = int(pids.read_text().split()[0])
        os.kill(first_child, 9)
        wait_until(lambda: tree_of(2), "the killed sleep to drop out")
        assert len(sampler) == 2  # the dead child's entry was dropped
    finally:
        os.killpg(shell.pid, 9)
        shell.wait(timeout=DEADLINE)


def test_forget_and_prune_drop_cached_processes(sleeper: subprocess.Popen[bytes]) -> None:
    sampler = ProcessSampler()
    assert sampler.sample(os.getpid()) is not None
    assert sampler.sample(sleeper.pid) is not None
    sampler.prune([sleeper.pid])
    assert len(sampler) == 1
    sampler.forget(sleeper.pid)
    assert len(sampler) == 0


def test_sample_of_a_pid_that_never_existed_is_none() -> None:
    assert ProcessSampler().sample(2**22 + 12345) is None  # above Linux's pid_max


def test_proc_sample_dict_has_stable_json_ready_keys(sleeper: subprocess.Popen[bytes]) -> None:
    sample = ProcessSampler().sample(sleeper.pid)
    assert sample is not None
    data = json.loads(json.dumps(sample.to_dict()))
    assert set(data) == {
        "pid",
        "cpu_percent",
        "rss_bytes",
        "threads",
        "fds",
        "create_time",
        "processes",
    }
    assert data["rss_bytes"] == sample.rss_bytes


def test_system_sample_has_the_documented_shape_and_is_json_serializable(
    tmp_path: Path,
) -> None:
    system_sample([])  # prime cpu_percent, as the daemon does at start
    sample = system_sample([str(tmp_path)])
    data = json.loads(json.dumps(sample.to_dict()))
    assert set(data) == {
        "load",
        "cpu_percent",
        "memory",
        "swap_percent",
        "disks",
        "temperature_c",
        "boot_time",
        "uptime_seconds",
    }
    assert len(data["load"]) == 3
    assert set(data["memory"]) == {"total", "available", "percent"}
    assert data["memory"]["total"] >= data["memory"]["available"] > 0
    assert 0.0 <= data["cpu_percent"] <= 100.0
    assert data["uptime_seconds"] > 0
    assert data["temperature_c"] is None or isinstance(data["temperature_c"], float)
    disk = data["disks"][str(tmp_path)]
    assert set(disk) == {"total", "used", "free", "percent"}
    assert disk["total"] > 0


def test_disks_on_the_same_filesystem_are_reported_once_and_missing_paths_skipped(
    tmp_path: Path,
) -> None:
    (tmp_path / "logs").mkdir()
    paths = [str(tmp_path), str(tmp_path / "logs"), str(tmp_path / "missing")]
    disks = system_sample(paths).to_dict()["disks"]
    assert list(disks) == [str(tmp_path)]


class Reading(NamedTuple):
    label: str
    current: float


def test_pick_temperature_prefers_the_cpu_sensor_over_hotter_others() -> None:
    sensors: dict[str, Any] = {
        "nvme": [Reading("Composite", 60.0)],
        "cpu_thermal": [Reading("", 48.31), Reading("", 47.0)],
    }
    assert pick_temperature(sensors) == 48.3


def test_pick_temperature_falls_back_to_the_hottest_plausible_reading() -> None:
    sensors: dict[str, Any] = {
        "acme": [Reading("a", 41.0), Reading("b", -273.0)],
        "other": [Reading("c", 55.5), Reading("d", 0.0)],
    }
    assert pick_temperature(sensors) == 55.5
    assert pick_temperature({}) is None
    assert pick_temperature({"broken": [Reading("x", -273.0)]}) is None


def test_temperature_is_read_from_thermal_zones_in_millidegrees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # psutil's sensors must not mask the sysfs path on a machine that has real sensors.
    monkeypatch.setattr(psutil, "sensors_temperatures", lambda: {}, raising=False)
    for zone, text in (("thermal_zone0", "48312\n"), ("thermal_zone1", "51000\n")):
        (tmp_path / zone).mkdir()
        (tmp_path / zone / "temp").write_text(text)
    (tmp_path / "thermal_zone2").mkdir()
    (tmp_path / "thermal_zone2" / "temp").write_text("garbage")
    assert read_temperature(str(tmp_path)) == 51.0


def test_temperature_is_none_without_sensors_or_thermal_zones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(psutil, "sensors_temperatures", lambda: {}, raising=False)
    assert read_temperature(str(tmp_path)) is None
    sample = system_sample([], thermal_root=str(tmp_path))
    assert sample.temperature_c is None


MB = 1024 * 1024


def test_rss_watch_ignores_a_single_spike() -> None:
    watch = RssWatch()
    assert watch.observe("w", 300 * MB, 256 * MB, now=1.0) is False
    assert watch.observe("w", 100 * MB, 256 * MB, now=2.0) is False
    assert watch.observe("w", 300 * MB, 256 * MB, now=3.0) is False
    assert watch.over_since("w") == 3.0


def test_rss_watch_fires_when_rss_stays_above_the_limit_for_grace_samples() -> None:
    watch = RssWatch(grace=3)
    results = [watch.observe("w", 300 * MB, 256 * MB, now=float(t)) for t in range(4)]
    assert results == [False, False, True, True]
    assert watch.over_since("w") == 0.0
    watch.forget("w")
    assert watch.observe("w", 300 * MB, 256 * MB, now=9.0) is False
    assert watch.over_since("w") == 9.0


def test_rss_watch_keeps_workloads_apart_and_treats_equal_or_no_limit_as_fine() -> None:
    watch = RssWatch(grace=1)
    assert watch.observe("a", 256 * MB, 256 * MB, now=0.0) is False  # at the limit is fine
    assert watch.observe("b", 257 * MB, 256 * MB, now=0.0) is True
    assert watch.observe("a", 10**12, None, now=1.0) is False
    assert watch.over_since("a") is None


def test_rss_watch_rejects_a_grace_below_one() -> None:
    with pytest.raises(ValueError):
        RssWatch(grace=0)
