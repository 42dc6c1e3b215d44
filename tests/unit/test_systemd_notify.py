"""sd_notify datagrams of mastercontrol.daemon.systemd, received on a real AF_UNIX socket."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from mastercontrol.daemon.systemd import Notifier, monotonic_usec, parse_address
from tests.notify_listener import NotifyListener, parse_message


@pytest.fixture
def listener(tmp_path: Path):
    with NotifyListener(tmp_path / "notify.sock") as listener:
        yield listener


def notifier_for(listener: NotifyListener, **extra: str) -> Notifier:
    return Notifier.from_environ({**listener.environ(), **extra})


def only_message(listener: NotifyListener) -> str:
    received = listener.collect(timeout=10.0)
    assert len(received) == 1, received
    return received[0]


def test_ready_sends_ready_alone(listener: NotifyListener) -> None:
    assert notifier_for(listener).ready()
    assert only_message(listener) == "READY=1"


def test_ready_with_status_sends_both_in_one_datagram(listener: NotifyListener) -> None:
    notifier_for(listener).ready("3 workloads running")
    assert only_message(listener) == "READY=1\nSTATUS=3 workloads running"


def test_reloading_carries_the_monotonic_clock_for_notify_reload(
    listener: NotifyListener,
) -> None:
    before = monotonic_usec()
    notifier_for(listener).reloading()
    after = monotonic_usec()
    message = only_message(listener)
    assert message.split("\n")[0] == "RELOADING=1"
    fields = parse_message(message)
    assert set(fields) == {"RELOADING", "MONOTONIC_USEC"}
    assert before <= int(fields["MONOTONIC_USEC"]) <= after


def test_monotonic_usec_is_clock_monotonic() -> None:
    # systemd compares MONOTONIC_USEC with its own CLOCK_MONOTONIC reading.
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    value = monotonic_usec()
    assert before <= value <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def test_stopping_sends_stopping(listener: NotifyListener) -> None:
    notifier_for(listener).stopping()
    assert only_message(listener) == "STOPPING=1"


def test_status_sends_one_line_even_when_given_several(listener: NotifyListener) -> None:
    notifier_for(listener).status("reload rejected:\nbad.yaml:3: unknown field")
    assert only_message(listener) == "STATUS=reload rejected: bad.yaml:3: unknown field"


def test_watchdog_pings_when_armed_for_our_pid(listener: NotifyListener) -> None:
    notifier = notifier_for(listener, WATCHDOG_USEC="60000000", WATCHDOG_PID=str(os.getpid()))
    assert notifier.watchdog_interval() == 30.0
    assert notifier.watchdog()
    assert only_message(listener) == "WATCHDOG=1"


def test_watchdog_without_pid_is_honoured(listener: NotifyListener) -> None:
    notifier = notifier_for(listener, WATCHDOG_USEC="2000000")
    assert notifier.watchdog_interval() == 1.0


def test_watchdog_pid_of_another_process_disables_the_watchdog(
    listener: NotifyListener,
) -> None:
    notifier = notifier_for(listener, WATCHDOG_USEC="60000000", WATCHDOG_PID=str(os.getpid() + 1))
    assert notifier.watchdog_interval() is None
    assert not notifier.watchdog()
    assert listener.collect(timeout=0.2) == []
    # Notifications other than the watchdog still go out.
    assert notifier.ready()
    assert only_message(listener) == "READY=1"


@pytest.mark.parametrize("usec", ["", "0", "-5", "soon"])
def test_unusable_watchdog_usec_means_no_watchdog(listener: NotifyListener, usec: str) -> None:
    assert notifier_for(listener, WATCHDOG_USEC=usec).watchdog_interval() is None


def test_watchdog_without_notify_socket_is_off() -> None:
    notifier = Notifier.from_environ({"WATCHDOG_USEC": "60000000"})
    assert notifier.watchdog_interval() is None


def test_abstract_namespace_socket_receives_messages() -> None:
    with NotifyListener.abstract() as listener:
        assert listener.address.startswith("@")
        notifier = notifier_for(listener)
        assert notifier.enabled
        notifier.ready("up")
        assert listener.wait_for("READY=1") == {"READY": "1", "STATUS": "up"}


def test_missing_socket_path_is_counted_not_raised(tmp_path: Path) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.enabled
    assert not notifier.ready()
    assert not notifier.stopping()
    assert notifier.errors == 2
    assert notifier.sent == 0
    assert isinstance(notifier.last_error, FileNotFoundError)


def test_full_receive_queue_does_not_block_the_sender(listener: NotifyListener) -> None:
    # Nobody reads the socket: once its queue is full sendto() must fail with EAGAIN at once
    # instead of blocking the master. Bounded: the queue holds far fewer than 100k datagrams.
    notifier = notifier_for(listener)
    for _ in range(100_000):
        if not notifier.status("x" * 1024):
            break
    assert notifier.errors == 1
    assert isinstance(notifier.last_error, BlockingIOError)
    assert notifier.sent > 0


def test_without_notify_socket_everything_is_a_silent_no_op() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    assert notifier.watchdog_interval() is None
    results = [
        notifier.ready("x"),
        notifier.reloading(),
        notifier.stopping(),
        notifier.status("x"),
        notifier.watchdog(),
    ]
    assert results == [False] * 5
    assert (notifier.sent, notifier.errors) == (0, 0)


@pytest.mark.parametrize("value", ["", "@", "relative/notify.sock", "vsock:2:1234"])
def test_unusable_notify_socket_values_disable_notifications(value: str) -> None:
    assert parse_address(value) is None
    assert not Notifier.from_environ({"NOTIFY_SOCKET": value}).enabled


def test_from_environ_unsets_the_variables_in_os_environ(
    monkeypatch: pytest.MonkeyPatch, listener: NotifyListener
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = Notifier.from_environ()
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        assert name not in os.environ
        # os.environ.pop() must have reached the C environment too (unsetenv), which is what
        # exec'd children and os.system() see.
        assert os.getenv(name) is None
    assert os.popen("env").read().count("NOTIFY_SOCKET") == 0
    # The values were read before being removed.
    assert notifier.enabled
    assert notifier.watchdog_interval() == 30.0


def test_from_environ_removes_the_variables_from_a_given_mapping(
    listener: NotifyListener,
) -> None:
    environ = {**listener.environ(), "WATCHDOG_USEC": "1", "WATCHDOG_PID": "1", "PATH": "/bin"}
    Notifier.from_environ(environ)
    assert environ == {"PATH": "/bin"}


def test_listener_wait_for_reports_what_it_received(listener: NotifyListener) -> None:
    notifier_for(listener).status("starting")
    with pytest.raises(AssertionError, match="STATUS=starting"):
        listener.wait_for("READY=1", timeout=0.2)


def test_listener_rejects_a_path_too_long_for_af_unix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="longer than"):
        NotifyListener(tmp_path / ("x" * 120))


def test_default_listener_path_is_usable_and_cleaned_up() -> None:
    with NotifyListener() as listener:
        path = Path(listener.address)
        assert path.exists()
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        with sender:
            sender.sendto(b"READY=1", listener.address)
        assert listener.wait_for("READY=1") == {"READY": "1"}
    assert not path.exists()
    assert not path.parent.exists()


def test_the_master_and_the_child_scrub_the_same_systemd_variables() -> None:
    from mastercontrol.child.spawn import SYSTEMD_VARS

    environ = {name: "1" for name in SYSTEMD_VARS} | {"PATH": "/bin"}
    Notifier.from_environ(environ)
    assert environ == {"PATH": "/bin"}
