"""One workload's log file: timestamped lines from its output pipe, rotated by size.

The master owns one `LogWriter` per workload and feeds it whatever it read from the child's pipe.
Disk use is bounded by (backups + 1) * max_bytes (plus at most one line per file) and memory by
`max_line`, whatever the workload prints. No error of the file system ever reaches the caller: data
that cannot be written is counted in `dropped_bytes` and the writer tries the file again after
`retry_interval` seconds; supervision never stops for a log. A log dir (or file) deleted under an
open writer is noticed at the first write `check_interval` after the last check (the open file has
no link left), recreated (the dir with its old mode and group), and what was written since that
check is counted as dropped. Each incident (a failure after a success) is reported once through
`report`, and its end (the first write that works again) once more: a full disk or a deleted dir
costs two log lines, not one per write. Writes go to a regular file, so they do not block on a
reader. `read_tail` reads the same files back.

Both sides of the file format live here, at the top of the package beside errors.py rather than
in daemon/: the master writes the files (daemon/output.py) and `mastercontrol-ctl logs` reads
them when no daemon answers, and ctl must never import daemon/. Imports only the standard
library; never mastercontrol.daemon, store or ctl.

Line format: `2026-11-27T03:49:39.123+00:00 <the line as the workload wrote it>`. Timestamps are
UTC with an explicit offset: devices of a fleet live in different time zones and DST changes
would make local times ambiguous; UTC lines from several devices sort together. The bytes of
the line are written unchanged (no decoding), so a workload printing binary junk cannot break
the writer.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

MAX_LINE = 64 * 1024  # longest line held back waiting for its newline; longer ones are cut
RETRY_INTERVAL = 5.0  # seconds between attempts to reopen a file that failed
CHECK_INTERVAL = 1.0  # seconds between checks that the open file still has a name (one fstat)
_TAIL_BLOCK = 8192
_MAX_BACKUPS_READ = 1000  # read_tail never walks further back than this many rotated files

Report = Callable[[int, str], None]  # (logging level, message): once per incident and recovery


class LogWriter:
    """Append timestamped lines to `path`, rotating to path.1 ... path.<backups>."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_bytes: int,
        backups: int,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        max_line: int = MAX_LINE,
        retry_interval: float = RETRY_INTERVAL,
        report: Report | None = None,
        check_interval: float = CHECK_INTERVAL,
    ) -> None:
        if max_bytes <= 0 or backups < 0 or max_line <= 0:
            raise ValueError("max_bytes and max_line must be positive, backups >= 0")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.max_line = max_line
        self.retry_interval = retry_interval
        self._clock = clock  # wall time: only for the timestamps people read
        self._monotonic = monotonic  # for the retry delay, immune to clock jumps
        self._partial = b""  # the start of a line whose newline has not arrived yet
        self._fd: int | None = None  # opened lazily, kept open between feeds
        self._size = 0  # bytes in the current file
        self._retry_at = float("-inf")
        self._check_at = float("-inf")
        self.check_interval = check_interval
        self._unchecked = 0  # payload written since the file was last seen linked
        self._dir_look: tuple[int, int] | None = None  # the log dir's (mode, gid) at first open
        self._report = report
        self._trouble: str | None = None  # the incident in progress (its first error), if any
        # Counters of workload output bytes; a line's newline and timestamp are not counted.
        self.written_bytes = 0
        self.dropped_bytes = 0
        self.incidents = 0  # failures after a success: a full disk, a deleted dir...
        self.last_error: str | None = None

    def feed(self, data: bytes) -> None:
        """Take raw bytes from the pipe; write every line they complete."""
        if not data:
            return
        buf = self._partial + data
        lines: list[bytes] = []
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            lines.extend(self._cut(buf[start:end]))
            start = end + 1
        rest = buf[start:]
        # Output without newlines must not grow memory: full chunks go out as lines now.
        cut = len(rest) - len(rest) % self.max_line
        if cut:
            lines.extend(self._cut(rest[:cut]))
            rest = rest[cut:]
        self._partial = rest
        if lines:
            self._write(lines)

    def flush_partial(self) -> None:
        """Write a held line that has no newline (the child exited, or its pipe closed)."""
        if self._partial:
            line, self._partial = self._partial, b""
            self._write([line])

    def close(self) -> None:
        self.flush_partial()
        self._close_fd()

    def usable(self) -> bool:
        """Open the file now if it is not open; False (see last_error) if that fails."""
        return self._fd is not None or self._open()

    @property
    def held_bytes(self) -> int:
        """Bytes of an unfinished line waiting for its newline (never more than max_line)."""
        return len(self._partial)

    def _cut(self, line: bytes) -> list[bytes]:
        if len(line) <= self.max_line:
            return [line]
        return [line[i : i + self.max_line] for i in range(0, len(line), self.max_line)]

    def _write(self, lines: list[bytes]) -> None:
        prefix = line_stamp(self._clock()).encode("ascii") + b" "
        batch: list[bytes] = []
        batch_size = batch_payload = 0
        if self._fd is not None:
            self._check_linked()
        for i, line in enumerate(lines):
            record = prefix + line + b"\n"
            if self._fd is None and not self._open():
                self._drop(lines[i:])
                return
            full = self._size + batch_size + len(record) > self.max_bytes
            if full and self._size + batch_size > 0:
                # Rotate between lines, so no line is split across two files.
                if not self._append(b"".join(batch), batch_payload) or not self._rotate():
                    self._drop(lines[i:])
                    return
                batch, batch_size, batch_payload = [], 0, 0
            batch.append(record)
            batch_size += len(record)
            batch_payload += len(line)
        if batch:
            self._append(b"".join(batch), batch_payload)

    def _append(self, blob: bytes, payload: int) -> bool:
        """One write of several lines; on failure all of their payload counts as dropped."""
        if not blob:
            return True
        assert self._fd is not None
        view = memoryview(blob)
        try:
            while view:
                written = os.write(self._fd, view)
                self._size += written
                view = view[written:]
        except OSError as exc:
            self.dropped_bytes += payload
            self._fail(exc)
            return False
        self.written_bytes += payload
        self._unchecked += payload
        if self._trouble is not None:  # the incident is over once a write succeeds again
            self._trouble = None
            self._say(
                logging.INFO,
                f"writing {self.path} again ({self.dropped_bytes} bytes of output dropped "
                "in all so far)",
            )
        return True

    def _check_linked(self) -> None:
        """At most every CHECK_INTERVAL: is the open file still in the log dir? A deleted file
        (or dir) takes writes without an error, into nothing anyone can read."""
        now = self._monotonic()
        if self._fd is None or (self.check_interval and now < self._check_at):
            return
        self._check_at = now + self.check_interval
        try:
            linked = os.fstat(self._fd).st_nlink > 0
        except OSError:
            linked = False
        if not linked:
            lost, self._unchecked = self._unchecked, 0
            self.written_bytes -= lost
            self.dropped_bytes += lost
            self._close_fd()
            self._incident(
                f"{self.path} was deleted (or its directory); up to {lost} bytes "
                "written since were lost; recreating it"
            )
        self._unchecked = 0

    def _drop(self, lines: list[bytes]) -> None:
        self.dropped_bytes += sum(len(line) for line in lines)

    def _open(self) -> bool:
        if self._monotonic() < self._retry_at:
            return False
        # O_NOFOLLOW: a `<name>.log` symlink planted in the log dir is refused, never followed
        # (a root daemon would append workload output to whatever it points at).
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            try:
                fd = os.open(self.path, flags, 0o640)
            except FileNotFoundError:  # the log dir was removed: make it again
                self._make_dir()
                fd = os.open(self.path, flags, 0o640)
            self._size = os.fstat(fd).st_size
            if self._dir_look is None:
                st = os.stat(self.path.parent)
                self._dir_look = (stat.S_IMODE(st.st_mode), st.st_gid)
        except OSError as exc:
            self._fail(exc)
            return False
        self._fd = fd
        self._unchecked = 0
        self.last_error = None
        return True

    def _make_dir(self) -> None:
        """The log dir again, as it was when this writer first opened its file: its mode
        (setgid included) and group, so the logs in it take `daemon.socket_group` again."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._dir_look is not None:
            mode, gid = self._dir_look
            os.chown(self.path.parent, -1, gid)
            os.chmod(self.path.parent, mode)  # after chown, which may clear setgid

    def _rotate(self) -> bool:
        """name.log -> name.log.1 -> ... -> name.log.<backups> (the oldest is replaced)."""
        self._close_fd()
        try:
            if self.backups == 0:
                os.unlink(self.path)
            for i in range(self.backups, 0, -1):
                src = self.path if i == 1 else self._backup(i - 1)
                try:
                    os.replace(src, self._backup(i))
                except FileNotFoundError:
                    pass
        except OSError as exc:
            self._fail(exc)
            return False
        return self._open()

    def _backup(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{i}")

    def _fail(self, exc: OSError) -> None:
        self._close_fd()
        self.last_error = f"{self.path}: {exc.strerror or exc}"
        self._retry_at = self._monotonic() + self.retry_interval
        self._incident(
            f"cannot write {self.last_error}; output is dropped and counted until "
            f"it can be written again (tried every {self.retry_interval:g} s)"
        )

    def _incident(self, message: str) -> None:
        """Report the start of an incident once; later failures of the same one are silent."""
        if self._trouble is not None:
            return
        self._trouble = message  # set first: a report that writes into this writer stays quiet
        self.incidents += 1
        self._say(logging.WARNING, message)

    def _say(self, level: int, message: str) -> None:
        if self._report is not None:
            self._report(level, message)

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass


def line_stamp(when: float) -> str:
    """The timestamp that opens every line of every log file: ISO 8601, UTC, milliseconds."""
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds")


class LogWriterHandler(logging.Handler):
    """The daemon's own log (mastercontrold.log) through a LogWriter: the same timestamps,
    rotation, O_NOFOLLOW, recreation of a deleted log dir and drop counting as the workload
    logs. The writer's reports about its own file are logged after the record that caused them
    (never from inside the writer), so they reach this file too once it can be written."""

    def __init__(self, path: str | os.PathLike[str], max_bytes: int, backups: int) -> None:
        super().__init__()
        self._pending: list[tuple[int, str]] = []
        # Checked on every line (it is a quiet log): a deleted log dir comes back at the next one.
        self.writer = LogWriter(
            path, max_bytes, backups, check_interval=0,
            report=lambda level, message: self._pending.append((level, message)),
        )  # fmt: skip

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.writer.feed(line.encode("utf-8", "replace") + b"\n")
        pending, self._pending = self._pending, []
        for level, message in pending:
            logging.getLogger("mastercontrol.logfile").log(level, "%s", message)

    def close(self) -> None:
        self.writer.close()
        super().close()


class SymlinkRefused(OSError):
    """A log path is a symlink (planted by someone): never followed."""


def read_tail(path: str | os.PathLike[str], lines: int) -> list[str]:
    """The last `lines` lines of a log, continuing into path.1, path.2 ... if it is short.

    Lines are returned without their newline, decoded as UTF-8 with replacement characters.
    Reads backwards from the end of each file in blocks, never a whole large file.
    """
    if lines <= 0:
        return []
    base = Path(path)
    result: list[bytes] = []
    for i in range(_MAX_BACKUPS_READ + 1):
        candidate = base if i == 0 else base.with_name(f"{base.name}.{i}")
        try:
            result = _tail_of_file(candidate, lines - len(result)) + result
        except FileNotFoundError:
            if i > 0:  # the current file may be missing for a moment; backups are contiguous
                break
        if len(result) >= lines:
            break
    return [line.decode("utf-8", "replace") for line in result[-lines:]]


def _tail_of_file(path: Path, n: int) -> list[bytes]:
    # O_NOFOLLOW: `logs` must not print a file a planted symlink points at.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SymlinkRefused(f"{path} is a symlink; refusing to follow it") from None
        raise
    with open(fd, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        pos, data = end, b""
        # n lines need n + 1 newlines in view (the first one may end a line we do not want).
        while pos > 0 and data.count(b"\n") <= n:
            step = min(_TAIL_BLOCK, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()  # the file ends with a newline: no empty last line
    if pos > 0:
        parts = parts[1:]  # starts mid-line
    return parts[-n:] if n > 0 else []
