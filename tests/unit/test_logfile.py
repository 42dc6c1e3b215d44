"""LogWriter and read_tail on real files: timestamps, bounded memory and disk, failures."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pytest

from mastercontrol.logfile import LogWriter, read_tail

STAMP = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 "
T0 = 1_795_751_379.123  # 2026-11-27T03:49:39.123Z


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def payload(path: Path) -> list[bytes]:
    """The lines of a log file with their timestamps checked and removed."""
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    for line in lines[:-1]:
        assert re.match(STAMP, line), line
    return [line[30:] for line in lines[:-1]]


def test_complete_lines_get_a_utc_timestamp(tmp_path: Path) -> None:
    log = LogWriter(tmp_path / "w.log", 10_000, 2, clock=lambda: T0)
    log.feed(b"first\nsecond\nthi")
    assert (tmp_path / "w.log").read_bytes() == (
        b"2026-11-27T03:49:39.123+00:00 first\n2026-11-27T03:49:39.123+00:00 second\n"
    )
    log.feed(b"rd\n")
    assert payload(tmp_path / "w.log") == [b"first", b"second", b"third"]


def test_file_is_opened_lazily(tmp_path: Path) -> None:
    log = LogWriter(tmp_path / "w.log", 10_000, 2)
    assert not (tmp_path / "w.log").exists()
    log.feed(b"no newline yet")
    assert not (tmp_path / "w.log").exists()
    log.close()
    assert payload(tmp_path / "w.log") == [b"no newline yet"]


def test_flush_partial_writes_the_held_line_once(tmp_path: Path) -> None:
    log = LogWriter(tmp_path / "w.log", 10_000, 2)
    log.feed(b"a\nlast words")
    log.flush_partial()
    log.flush_partial()
    log.feed(b"new run\n")
    assert payload(tmp_path / "w.log") == [b"a", b"last words", b"new run"]


def test_bytes_are_written_unchanged(tmp_path: Path) -> None:
    log = LogWriter(tmp_path / "w.log", 10_000, 2)
    junk = bytes(range(256)).replace(b"\n", b"")
    log.feed(junk + b"\n\n")
    assert payload(tmp_path / "w.log") == [junk, b""]


def test_ten_megabytes_without_newline_keep_memory_bounded(tmp_path: Path) -> None:
    log = LogWriter(tmp_path / "w.log", 100 * 2**20, 1, max_line=64 * 1024)
    total = 10 * 2**20 + 123
    chunk = b"x" * 65536
    fed = 0
    while fed < total:
        piece = chunk[: min(len(chunk), total - fed)]
        log.feed(piece)
        fed += len(piece)
        assert log.held_bytes < 64 * 1024
    log.close()
    lines = payload(tmp_path / "w.log")
    assert sum(len(line) for line in lines) == total == log.written_bytes
    assert max(len(line) for line in lines) == 64 * 1024
    assert len(lines) == 161  # 160 full chunks + the 123-byte rest
    assert log.dropped_bytes == 0


def test_one_huge_feed_is_cut_into_lines(tmp_path: Path) -> None:
    log = LogWriter(tmp_path / "w.log", 100 * 2**20, 1, max_line=1000)
    log.feed(b"y" * 2500 + b"\nz")
    log.close()
    assert payload(tmp_path / "w.log") == [b"y" * 1000, b"y" * 1000, b"y" * 500, b"z"]


def test_rotation_bounds_the_number_and_size_of_files(tmp_path: Path) -> None:
    max_bytes, backups = 1000, 3
    log = LogWriter(tmp_path / "w.log", max_bytes, backups)
    for i in range(500):
        log.feed(f"line {i:04d} ".encode() + b"." * (i % 50) + b"\n")
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["w.log", "w.log.1", "w.log.2", "w.log.3"]
    for name in files:
        assert (tmp_path / name).stat().st_size <= max_bytes
    # Nothing is lost between the files that remain: the newest lines, in order, no gaps.
    kept = [
        line
        for name in ["w.log.3", "w.log.2", "w.log.1", "w.log"]
        for line in payload(tmp_path / name)
    ]
    numbers = [int(line.split()[1]) for line in kept]
    assert numbers == list(range(numbers[0], 500))
    assert numbers[0] > 0


def test_a_line_longer_than_max_bytes_gets_a_file_of_its_own(tmp_path: Path) -> None:
    log = LogWriter(tmp_path / "w.log", 100, 2, max_line=1000)
    log.feed(b"short\n" + b"L" * 300 + b"\nafter\n")
    assert payload(tmp_path / "w.log.2") == [b"short"]
    assert payload(tmp_path / "w.log.1") == [b"L" * 300]
    assert payload(tmp_path / "w.log") == [b"after"]


def test_zero_backups_start_the_file_over(tmp_path: Path) -> None:
    log = LogWriter(tmp_path / "w.log", 100, 0)
    for i in range(20):
        log.feed(f"line {i}\n".encode())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.log"]
    assert payload(tmp_path / "w.log")[-1] == b"line 19"


def test_existing_large_file_is_rotated_before_writing(tmp_path: Path) -> None:
    (tmp_path / "w.log").write_bytes(b"old\n" * 100)
    log = LogWriter(tmp_path / "w.log", 200, 1)
    log.feed(b"new\n")
    assert (tmp_path / "w.log.1").read_bytes() == b"old\n" * 100
    assert payload(tmp_path / "w.log") == [b"new"]


def test_unwritable_location_drops_and_counts_then_recovers(tmp_path: Path) -> None:
    # The suite runs as root, which ignores permission bits: a regular file where the log
    # directory should be makes every open fail (ENOTDIR) for root too.
    blocker = tmp_path / "logs"
    blocker.write_text("not a directory")
    clock = FakeMonotonic()
    log = LogWriter(blocker / "w.log", 10_000, 2, monotonic=clock, retry_interval=5.0)
    log.feed(b"lost 1\n")
    log.feed(b"lost 22\n")
    assert log.dropped_bytes == len(b"lost 1") + len(b"lost 22")
    assert log.last_error is not None and "Not a directory" in log.last_error

    blocker.unlink()
    blocker.mkdir()
    log.feed(b"lost 333\n")  # still inside the retry interval: not even tried
    assert not (blocker / "w.log").exists()
    clock.now += 5.0
    log.feed(b"back\n")
    assert payload(blocker / "w.log") == [b"back"]
    assert log.dropped_bytes == 6 + 7 + 8
    assert log.written_bytes == 4
    assert log.last_error is None


def test_full_disk_drops_without_raising(tmp_path: Path) -> None:
    log = LogWriter("/dev/full", 10**9, 1)  # every write fails with ENOSPC
    log.feed(b"a" * 100 + b"\n")
    log.feed(b"b" * 50 + b"\n")
    log.close()
    assert log.dropped_bytes == 150
    assert log.written_bytes == 0
    assert log.last_error is not None and "No space" in log.last_error


def test_removed_log_dir_is_created_again(tmp_path: Path) -> None:
    log = LogWriter(tmp_path / "logs" / "w.log", 10_000, 2)
    log.feed(b"hello\n")
    assert payload(tmp_path / "logs" / "w.log") == [b"hello"]


def test_a_log_dir_deleted_under_an_open_writer_comes_back_and_is_reported_once(
    tmp_path: Path,
) -> None:
    clock = FakeMonotonic()
    said: list[tuple[int, str]] = []
    path = tmp_path / "logs" / "w.log"
    log = LogWriter(path, 10_000, 2, monotonic=clock, report=lambda lv, m: said.append((lv, m)))
    log.feed(b"kept\n")
    clock.now += 2.0
    log.feed(b"checked\n")  # the file is seen linked before this line is written
    shutil.rmtree(tmp_path / "logs")
    log.feed(b"into the deleted file\n")  # within CHECK_INTERVAL: not noticed yet
    clock.now += 2.0
    log.feed(b"after\n")
    assert payload(path) == [b"after"]
    # Counted as lost: what was written since the last check that saw the file linked.
    assert log.dropped_bytes == len(b"checked") + len(b"into the deleted file")
    assert [lv for lv, _ in said] == [logging.WARNING, logging.INFO]
    assert "was deleted" in said[0][1] and "again" in said[1][1]
    clock.now += 2.0
    log.feed(b"quiet\n")
    assert len(said) == 2 and log.incidents == 1


def test_a_full_disk_is_reported_once_per_incident(tmp_path: Path) -> None:
    clock = FakeMonotonic()
    said: list[tuple[int, str]] = []
    log = LogWriter(
        "/dev/full", 10**9, 1, monotonic=clock, report=lambda lv, m: said.append((lv, m))
    )
    for _ in range(5):
        log.feed(b"x" * 10 + b"\n")
        clock.now += 10.0
    assert [lv for lv, _ in said] == [logging.WARNING]
    assert "No space" in said[0][1]
    assert log.dropped_bytes == 50


def test_invalid_sizes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LogWriter(tmp_path / "w.log", 0, 1)


def test_read_tail_returns_the_last_lines(tmp_path: Path) -> None:
    path = tmp_path / "w.log"
    path.write_text("".join(f"line {i}\n" for i in range(10_000)))
    assert read_tail(path, 3) == ["line 9997", "line 9998", "line 9999"]
    assert read_tail(path, 0) == []
    assert len(read_tail(path, 5000)) == 5000


def test_read_tail_continues_into_rotated_files(tmp_path: Path) -> None:
    log = LogWriter(tmp_path / "w.log", 300, 3)
    for i in range(40):
        log.feed(f"line {i:02d}\n".encode())
    log.close()
    tail = read_tail(tmp_path / "w.log", 25)
    assert [line[30:] for line in tail] == [f"line {i:02d}" for i in range(15, 40)]
    everything = read_tail(tmp_path / "w.log", 1000)  # shorter than asked: all there is
    assert everything[-1].endswith("line 39")
    assert len(everything) < 40


def test_read_tail_of_a_file_without_final_newline(tmp_path: Path) -> None:
    (tmp_path / "w.log").write_bytes(b"a\nb\nunfinished")
    assert read_tail(tmp_path / "w.log", 2) == ["b", "unfinished"]


def test_read_tail_of_missing_log_is_empty(tmp_path: Path) -> None:
    assert read_tail(tmp_path / "none.log", 10) == []
