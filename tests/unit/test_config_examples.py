"""The example workloads run for real and match their config files (module, entry point, params)."""

from __future__ import annotations

import importlib
import inspect
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from examples.agents import data_collector, hello_agent
from examples.scripts import counter
from mastercontrol.config.load import load_config_dir

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 20.0


@pytest.mark.parametrize("name", sorted(load_config_dir(REPO / "examples" / "configs").workloads))
def test_example_config_points_at_a_callable_that_takes_its_params(name: str) -> None:
    workload = load_config_dir(REPO / "examples" / "configs").workloads[name]
    assert workload.module is not None
    entry = getattr(importlib.import_module(workload.module), workload.entry_point)
    inspect.signature(entry).bind(**workload.params)  # raises TypeError on a mismatch


def test_hello_agent_prints_a_timestamped_greeting(capsys: pytest.CaptureFixture[str]) -> None:
    hello_agent.run(greeting="hi there")
    out = capsys.readouterr().out
    assert out.rstrip().endswith(" hi there")
    assert out[:4].isdigit()  # ISO timestamp first


def test_data_collector_simulates_a_batch(capsys: pytest.CaptureFixture[str]) -> None:
    data_collector.run(source_url="https://example.invalid/x", batch_size=5, seed=1)
    assert "collected 5 records from https://example.invalid/x" in capsys.readouterr().out
    with pytest.raises(ValueError):
        data_collector.run(source_url="x", batch_size=0)


def test_counter_prints_the_next_count_each_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    count_file = tmp_path / "count"
    for _ in range(3):
        counter.run(count_file=str(count_file))
    out = capsys.readouterr().out.splitlines()
    assert out == ["counter: run 1", "counter: run 2", "counter: run 3"]


def read_lines(proc: subprocess.Popen[bytes], count: int) -> list[str]:
    """The first `count` lines of the child's stdout, waiting at most DEADLINE in total."""
    assert proc.stdout is not None
    fd, data, end = proc.stdout.fileno(), b"", time.monotonic() + DEADLINE
    while data.count(b"\n") < count:  # bounded by the deadline
        remaining = end - time.monotonic()
        assert remaining > 0, f"timed out waiting for {count} lines, got {data!r}"
        if select.select([fd], [], [], remaining)[0]:
            chunk = os.read(fd, 4096)
            assert chunk, f"stdout closed early after {data!r}"
            data += chunk
    return data.decode().splitlines()[:count]


def start_ticker(interval: float) -> subprocess.Popen[bytes]:
    code = f"from examples.services.ticker import run; run(interval={interval})"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, env=env)


def test_ticker_ticks_until_sigterm_then_exits_zero() -> None:
    proc = start_ticker(0.05)
    try:
        # Flushed per tick: lines arrive while it runs, not at exit.
        lines = read_lines(proc, 3)
        assert [line.split()[-2:] for line in lines] == [
            ["tick", "1"],
            ["tick", "2"],
            ["tick", "3"],
        ]
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=DEADLINE)
        assert proc.returncode == 0
        assert b"ticker stopping after" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=DEADLINE)
