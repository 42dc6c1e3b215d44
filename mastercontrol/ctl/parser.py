"""The argparse parser of mastercontrol-ctl: every command, option and argument type.

Values are checked here, so a bad one is a usage error (exit 2) before anything is asked of
the daemon; the man page and the docs are tested against this parser. Imports the stdlib and
the package's own modules only; never the daemon.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from mastercontrol import __version__
from mastercontrol.config.paths import add_path_options
from mastercontrol.ctl import DEFAULT_UNIT_DIR, DEFAULT_WAIT_SECONDS
from mastercontrol.ipc.protocol import parse_signal

MIN_TOP_INTERVAL = 0.5  # each `top` refresh makes the master sample every process: no spinning


def _seconds(floor: float) -> Callable[[str], float]:
    """An argparse type: a number of seconds of at least `floor` (else a usage error)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a number of seconds, got {text!r}"
            ) from None
        if not value >= floor or value == float("inf"):  # `not >=` also refuses nan
            raise argparse.ArgumentTypeError(
                f"must be a number of seconds >= {floor:g}, got {text}"
            )
        return value

    return parse


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _signal(text: str) -> str:
    try:
        return parse_signal(text).name
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mastercontrol-ctl",
        description="Control the Master Control daemon and its workloads.",
        epilog="Environment: MCTL_CONFIG_DIR, MCTL_DB_PATH, MCTL_SOCKET_PATH, MCTL_LOG_DIR. "
        "Exit codes: 0 ok, 1 failure, 2 usage, 3 not running, 4 unknown workload, "
        "7 daemon not reachable, 130 interrupted.",
    )
    add_path_options(parser)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wait_default = DEFAULT_WAIT_SECONDS
    sub.required = True

    up = sub.add_parser("up", help="run the daemon (foreground unless --detach)")
    up.add_argument("--detach", "-d", action="store_true", help="run it in the background")
    up.add_argument(
        "--accept-lost-state",
        action="store_true",
        help="the state database was lost: accept the one there is now (held counted "
        "workloads start with its counts)",
    )
    sub.add_parser("down", help="stop every workload and the daemon")
    lst = sub.add_parser("list", help="every workload and its state")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.add_argument("--tag", help="only workloads with this tag")
    lst.add_argument("--names", action="store_true", help="names only, one per line")
    for name, text, wait_help in (
        (
            "start",
            "start workloads (an agent runs now and keeps its schedule)",
            "wait until each is up (RUNNING, or its run already ended)",
        ),
        (
            "stop",
            "stop workloads (remembered across daemon restarts)",
            "wait until each is no longer running",
        ),
        (
            "restart",
            "stop, then start workloads",
            "wait until each is up again (RUNNING, or its run already ended)",
        ),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument(
            "names",
            nargs="*",
            metavar="NAME",
            help="workload names; 'all' is every workload except internal @services",
        )
        p.add_argument(
            "--tag",
            action="append",
            default=[],
            metavar="TAG",
            help="also every workload with this tag (repeatable)",
        )
        p.add_argument("--wait", action="store_true", help=wait_help)
        p.add_argument(
            "--timeout",
            type=_seconds(0.0),
            default=DEFAULT_WAIT_SECONDS,
            metavar="S",
            help=f"with --wait: give up after S seconds, exit 1 (default {wait_default:g})",
        )
    sg = sub.add_parser(
        "signal", help="send a signal to workloads' process groups (state unchanged)"
    )
    sg.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="workload names; 'all' is every workload except internal @services",
    )
    sg.add_argument("signal", type=_signal, metavar="SIG", help="HUP, SIGHUP or 1")
    sg.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="TAG",
        help="also every workload with this tag (repeatable)",
    )
    sg.set_defaults(wait=False)
    st = sub.add_parser("status", help="details of one workload (exit 3 if not running)")
    st.add_argument("name", metavar="NAME")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    lg = sub.add_parser("logs", help="show a workload's log")
    lg.add_argument("name", metavar="NAME")
    lg.add_argument("-n", "--lines", type=_count, default=50, help="lines to show (default 50)")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    sub.add_parser("validate", help="check every config file; exit 1 on any problem")
    rn = sub.add_parser("run", help="run a workload once in the foreground (no daemon needed)")
    rn.add_argument("name", metavar="NAME")
    rs = sub.add_parser(
        "reset",
        help="start a workload's run count from 0 (releases it if held after a lost state DB)",
    )
    rs.add_argument("name", nargs="?", metavar="NAME")
    rs.add_argument(
        "--all", action="store_true", help="accept the lost state database for every workload"
    )
    rl = sub.add_parser("reload", help="apply config changes (only what differs restarts)")
    rl.add_argument("--dry-run", action="store_true", help="show what would change")
    su = sub.add_parser(
        "systemd-unit",
        help="print (or --install) the systemd unit with this installation's program paths",
    )
    su.add_argument(
        "--install",
        nargs="?",
        const=str(DEFAULT_UNIT_DIR),
        metavar="DIR",
        help=f"write the unit into DIR (default {DEFAULT_UNIT_DIR})",
    )
    su.add_argument(
        "--no-hardening", action="store_true", help="with --install: skip the hardening drop-in"
    )
    tp = sub.add_parser("top", help="live table of workloads with CPU and memory")
    tp.add_argument(
        "--interval",
        type=_seconds(MIN_TOP_INTERVAL),
        default=2.0,
        help=f"seconds between refreshes (default 2, at least {MIN_TOP_INTERVAL:g})",
    )
    tp.add_argument(
        "--iterations", type=_count, default=0, help="stop after N refreshes (0: never)"
    )
    return parser
