"""decode(): how a child ended becomes (exit code, signal, reason, text)."""

from __future__ import annotations

import multiprocessing
import signal

import pytest

from mastercontrol.engine.exitstatus import (
    CHILD_EXIT_EXEC_FAILED,
    CHILD_EXIT_IMPORT_FAILED,
    CHILD_EXIT_MEMORY,
    CHILD_EXIT_SETUP_FAILED,
    ExitReason,
    ExitStatus,
    decode,
    is_failure,
    signal_name,
)


def test_reserved_codes_keep_their_values() -> None:
    # Children built from an older release exit with these; they must never move.
    assert (CHILD_EXIT_SETUP_FAILED, CHILD_EXIT_IMPORT_FAILED) == (120, 121)
    assert (CHILD_EXIT_MEMORY, CHILD_EXIT_EXEC_FAILED) == (122, 127)


def test_reason_strings_are_stable() -> None:
    assert {r.value for r in ExitReason} == {
        "exit",
        "signal",
        "timeout",
        "memory",
        "stopped",
        "rss_limit",
        "unhealthy",
        "setup_failed",
        "spawn_failed",
        "daemon_lost",
    }


def test_the_store_writes_the_same_daemon_lost_reason() -> None:
    from mastercontrol.store.queries import DAEMON_LOST

    assert DAEMON_LOST == ExitReason.DAEMON_LOST


@pytest.mark.parametrize(
    ("reason", "code", "failed"),
    [
        ("exit", 0, False),
        ("exit", 1, True),
        ("stopped", 0, False),  # an operator stop, restart, reload or shutdown
        ("stopped", None, False),
        ("signal", None, True),
        ("timeout", None, True),
        ("memory", 122, True),
        ("unhealthy", 0, True),
        ("rss_limit", None, True),
        ("setup_failed", 121, True),
        ("spawn_failed", None, True),
        ("daemon_lost", None, True),
    ],
)
def test_which_runs_count_as_failed(reason: str, code: int | None, failed: bool) -> None:
    assert is_failure(reason, code) is failed


@pytest.mark.parametrize("code", [0, 1, 2, 3, 255])
def test_normal_exit_any_code(code: int) -> None:
    assert decode(code, None) == ExitStatus(code, None, ExitReason.EXIT, f"exit status {code}")


def test_killed_by_a_signal_we_did_not_send() -> None:
    status = decode(-signal.SIGKILL, None)
    assert status == ExitStatus(None, 9, ExitReason.SIGNAL, "killed by SIGKILL")


def test_segfault_is_a_signal_not_memory() -> None:
    assert decode(-signal.SIGSEGV, None).reason == ExitReason.SIGNAL


def test_unnamed_signal_number_still_decodes() -> None:
    status = decode(-33, None)
    assert status.signal == 33
    assert status.text == "killed by signal 33"
    assert signal_name(15) == "SIGTERM"


def test_memory_error_code_is_memory() -> None:
    status = decode(CHILD_EXIT_MEMORY, None)
    assert status.reason == ExitReason.MEMORY
    assert status.exit_code == CHILD_EXIT_MEMORY
    assert status.text == "MemoryError (memory_limit_mb reached)"


@pytest.mark.parametrize(
    ("code", "target", "text"),
    [
        (CHILD_EXIT_IMPORT_FAILED, "x", "cannot import module 'x' or find its entry point"),
        (CHILD_EXIT_IMPORT_FAILED, None, "cannot import module or find its entry point"),
        (CHILD_EXIT_EXEC_FAILED, "/usr/bin/nope", "cannot execute command '/usr/bin/nope'"),
        (CHILD_EXIT_SETUP_FAILED, None, "setup failed before the workload ran"),
    ],
)
def test_setup_failures_say_which_step_failed(code: int, target: str | None, text: str) -> None:
    status = decode(code, None, target=target)
    assert status.reason == ExitReason.SETUP_FAILED
    assert status.exit_code == code
    assert status.text.startswith(text)


@pytest.mark.parametrize(
    ("stop_reason", "exitcode", "text"),
    [
        ("timeout", -signal.SIGTERM, "timed out (SIGTERM)"),
        ("timeout", -signal.SIGKILL, "timed out (SIGKILL)"),
        ("timeout", 0, "timed out (exit status 0)"),
        ("stopped", -signal.SIGTERM, "stopped (SIGTERM)"),
        ("stopped", 0, "stopped (exit status 0)"),
        ("rss_limit", -signal.SIGKILL, "stopped: max_rss_mb exceeded (SIGKILL)"),
        ("unhealthy", -signal.SIGTERM, "stopped: health check failed (SIGTERM)"),
    ],
)
def test_the_masters_stop_reason_wins_over_signal_and_exit(
    stop_reason: str, exitcode: int, text: str
) -> None:
    status = decode(exitcode, stop_reason)
    assert status.reason == ExitReason(stop_reason)
    assert status.text == text


def test_stop_reason_wins_over_reserved_codes() -> None:
    assert decode(CHILD_EXIT_MEMORY, "stopped").reason == ExitReason.STOPPED


def test_unknown_stop_reason_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown stop reason 'signal'"):
        decode(-9, "signal")


def _exit_with(code: int) -> None:
    raise SystemExit(code)


def _sleep_forever() -> None:
    signal.pause()


def test_decodes_real_multiprocessing_exitcodes() -> None:
    ctx = multiprocessing.get_context("fork")
    exited = ctx.Process(target=_exit_with, args=(3,))
    exited.start()
    exited.join(20)
    assert exited.exitcode is not None
    assert decode(exited.exitcode, None) == ExitStatus(3, None, ExitReason.EXIT, "exit status 3")

    killed = ctx.Process(target=_sleep_forever)
    killed.start()
    assert killed.pid is not None
    killed.kill()
    killed.join(20)
    assert killed.exitcode is not None
    assert decode(killed.exitcode, None).text == "killed by SIGKILL"
