"""sd_notify for the master: READY, RELOADING, STOPPING, STATUS and WATCHDOG datagrams to systemd.

One responsibility: turn daemon milestones into sd_notify(3) messages on $NOTIFY_SOCKET. The
protocol is small enough that libsystemd (and any third-party binding) is not worth a
dependency. Every send is a non-blocking datagram whose failure is counted and swallowed: the
master must never block or die because systemd is slow or gone. Without $NOTIFY_SOCKET every
method is a no-op, so the daemon calls them unconditionally.

Imports only the standard library and the one list of systemd's variables
(`mastercontrol.child.spawn.SYSTEMD_VARS`, which every child also scrubs).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import MutableMapping

from mastercontrol.child.spawn import SYSTEMD_VARS


def parse_address(value: str) -> bytes | None:
    """Return the AF_UNIX address for a $NOTIFY_SOCKET value, or None if it is not usable.

    `@name` is Linux's abstract namespace (a leading NUL byte on the wire). Like sd_notify(3),
    only absolute paths are accepted: a relative path would depend on our working directory.
    Newer systemd may also pass `vsock:` addresses (VMs); those are not for a Pi daemon.
    """
    if value.startswith("@") and len(value) > 1:
        return b"\0" + os.fsencode(value[1:])
    if value.startswith("/"):
        return os.fsencode(value)
    return None


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock systemd compares MONOTONIC_USEC= against."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _one_line(text: str) -> str:
    # A newline would start a new assignment inside the datagram (STATUS=x\nREADY=1 ...).
    return " ".join(text.splitlines())


class Notifier:
    """Sends sd_notify messages for the master; a no-op when systemd did not ask for them."""

    def __init__(self, address: bytes | None, watchdog_usec: int | None = None) -> None:
        self._address = address
        self._watchdog_usec = watchdog_usec if address is not None else None
        self.sent = 0  # datagrams accepted by the kernel
        self.errors = 0  # datagrams lost to an OSError (full queue, socket gone, ...)
        self.last_error: OSError | None = None

    @classmethod
    def from_environ(
        cls,
        environ: MutableMapping[str, str] | None = None,
        *,
        pid: int | None = None,
        unset: bool = True,
    ) -> Notifier:
        """Build the notifier the way sd_notify(3) reads the environment, then unset it.

        `environ` defaults to os.environ; popping from os.environ also calls unsetenv(), so
        neither multiprocessing children nor exec'd programs inherit the variables. The
        watchdog is honoured only if WATCHDOG_PID is absent or names us (`pid`, default our
        own), as sd_watchdog_enabled(3) does: the variables may have leaked from a parent.
        """
        env = os.environ if environ is None else environ
        raw_address = env.get("NOTIFY_SOCKET", "")
        raw_usec = env.get("WATCHDOG_USEC", "")
        raw_pid = env.get("WATCHDOG_PID", "")
        if unset:
            for name in SYSTEMD_VARS:
                env.pop(name, None)
        address = parse_address(raw_address)
        return cls(address, _watchdog_usec(raw_usec, raw_pid, os.getpid() if pid is None else pid))

    @property
    def enabled(self) -> bool:
        """True when systemd gave us a notification socket."""
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of WatchdogSec=), or None without a watchdog.

        Half, as sd_watchdog_enabled(3) advises, leaves a whole interval of slack for a loop
        that is late by one tick.
        """
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def ready(self, status: str | None = None) -> bool:
        """Startup (or a reload) is complete: systemd considers the service started."""
        return self.send("READY=1", *_status_lines(status))

    def reloading(self, status: str | None = None) -> bool:
        """A reload began; call ready() when it is applied or rejected.

        MONOTONIC_USEC= is what Type=notify-reload (systemd 253+) requires; older systemd and
        Type=notify ignore it, so it is always sent.
        """
        return self.send(
            "RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", *_status_lines(status)
        )

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown began: systemd stops expecting watchdog pings and shows "deactivating"."""
        return self.send("STOPPING=1", *_status_lines(status))

    def status(self, text: str) -> bool:
        """One line shown by `systemctl status` (e.g. "12 workloads, 11 running")."""
        return self.send(*_status_lines(text))

    def watchdog(self) -> bool:
        """Keep-alive ping; does nothing unless systemd armed a watchdog for this process."""
        if self._watchdog_usec is None:
            return False
        return self.send("WATCHDOG=1")

    def send(self, *assignments: str) -> bool:
        """Send `KEY=value` lines as one datagram; True if the kernel accepted it.

        A fresh socket per message keeps no descriptor open in the master, so no forked
        workload can inherit one; a few messages a minute make the cost irrelevant.
        """
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Non-blocking: a full receive queue gives EAGAIN instead of stalling the loop.
                sock.setblocking(False)
                sock.sendto(payload, self._address)
        except OSError as exc:
            self.errors += 1
            self.last_error = exc
            return False
        self.sent += 1
        return True


def _status_lines(status: str | None) -> tuple[str, ...]:
    return () if status is None else (f"STATUS={_one_line(status)}",)


def _watchdog_usec(raw_usec: str, raw_pid: str, our_pid: int) -> int | None:
    try:
        usec = int(raw_usec)
    except ValueError:
        return None
    if usec <= 0:
        return None
    if raw_pid:
        try:
            if int(raw_pid) != our_pid:
                return None
        except ValueError:
            return None
    return usec
