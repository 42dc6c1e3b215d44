"""mastercontrol-ctl: argparse subcommands -> IPC calls -> output and exit codes.

Exit codes (supervisorctl/LSB): 0 ok, 1 failure, 2 usage error, 3 `status` of a workload that is
not running, 4 unknown workload, 7 daemon not reachable, 130 interrupted. `validate` and `run`
work without a daemon. Imports the stdlib and the package's own modules only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mastercontrol import __version__
from mastercontrol.config.paths import Paths, add_path_options, paths_from_args
from mastercontrol.ctl import follow, render, systemd_unit
from mastercontrol.errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_UNKNOWN_WORKLOAD,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    IPCError,
)
from mastercontrol.ipc.client import DaemonUnreachable, MasterClient
from mastercontrol.ipc.protocol import ErrorCode

# `status` exits 0 for these: the workload is doing what it should (an agent between ticks too).
LIVE_STATES = frozenset({"RUNNING", "STARTING", "SCHEDULED"})


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
    sub.required = True

    up = sub.add_parser("up", help="run the daemon (foreground unless --detach)")
    up.add_argument("--detach", "-d", action="store_true", help="run it in the background")
    sub.add_parser("down", help="stop every workload and the daemon")
    lst = sub.add_parser("list", help="every workload and its state")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.add_argument("--tag", help="only workloads with this tag")
    lst.add_argument("--names", action="store_true", help="names only, one per line")
    for name, text in (
        ("start", "start a workload (an agent runs now and keeps its schedule)"),
        ("stop", "stop a workload (remembered across daemon restarts)"),
        ("restart", "stop, then start a workload"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("names", nargs="+", metavar="NAME")
    st = sub.add_parser("status", help="details of one workload (exit 3 if not running)")
    st.add_argument("name", metavar="NAME")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    lg = sub.add_parser("logs", help="show a workload's log")
    lg.add_argument("name", metavar="NAME")
    lg.add_argument("-n", "--lines", type=int, default=50, help="lines to show (default 50)")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    sub.add_parser("validate", help="check every config file; exit 1 on any problem")
    rn = sub.add_parser("run", help="run a workload once in the foreground (no daemon needed)")
    rn.add_argument("name", metavar="NAME")
    rl = sub.add_parser("reload", help="apply config changes (only what differs restarts)")
    rl.add_argument("--dry-run", action="store_true", help="show what would change")
    su = sub.add_parser(
        "systemd-unit",
        help="print (or --install) the systemd unit with this installation's program paths",
    )
    su.add_argument(
        "--install",
        nargs="?",
        const=str(systemd_unit.DEFAULT_UNIT_DIR),
        metavar="DIR",
        help=f"write the unit into DIR (default {systemd_unit.DEFAULT_UNIT_DIR})",
    )
    su.add_argument(
        "--no-hardening", action="store_true", help="with --install: skip the hardening drop-in"
    )
    tp = sub.add_parser("top", help="live table of workloads with CPU and memory")
    tp.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    tp.add_argument("--iterations", type=int, default=0, help="stop after N refreshes (0: never)")
    return parser


class Ctl:
    def __init__(self, paths: Paths, out: Callable[[str], None] = print) -> None:
        self.paths = paths
        self.client = MasterClient(paths.socket_path)
        self.out = out

    def err(self, text: str) -> None:
        print(f"mastercontrol-ctl: {text}", file=sys.stderr)

    # ------------------------------------------------------------------ daemon

    def daemon_argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mastercontrol.daemon.main",
            "--config-dir",
            str(self.paths.config_dir),
            "--db-path",
            str(self.paths.db_path),
            "--socket-path",
            str(self.paths.socket_path),
            "--log-dir",
            str(self.paths.log_dir),
        ]

    def cmd_up(self, args: argparse.Namespace) -> int:
        try:
            info = self.client.ping()
            self.out(f"mastercontrold is already running (pid {info['pid']})")
            return EXIT_OK
        except DaemonUnreachable:
            pass
        argv = self.daemon_argv()
        if not args.detach:
            os.execv(sys.executable, argv)
        self.paths.log_dir.mkdir(parents=True, exist_ok=True)
        errlog = self.paths.log_dir / "mastercontrold.stderr"
        with open(errlog, "ab") as err, open(os.devnull, "rb") as devnull:
            proc = subprocess.Popen(
                argv, stdin=devnull, stdout=err, stderr=err, start_new_session=True
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                self.err(f"mastercontrold exited with status {code}; see {errlog}")
                return EXIT_FAILURE
            try:
                info = self.client.ping()
                self.out(f"mastercontrold started (pid {info['pid']})")
                return EXIT_OK
            except DaemonUnreachable:
                time.sleep(0.05)
        self.err("mastercontrold did not answer within 20s")
        return EXIT_FAILURE

    def cmd_down(self, args: argparse.Namespace) -> int:
        result = self.client.down()
        pid = int(result["pid"])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                self.out("mastercontrold stopped")
                return EXIT_OK
            except PermissionError:
                pass
            if not self.paths.socket_path.exists():
                self.out("mastercontrold stopped")
                return EXIT_OK
            time.sleep(0.05)
        self.err(f"mastercontrold (pid {pid}) is still stopping")
        return EXIT_FAILURE

    # ------------------------------------------------------------------ workloads

    def cmd_list(self, args: argparse.Namespace) -> int:
        # --json: fresh CPU/memory samples; the table does not show them
        result = self.client.workloads(tag=args.tag or None, metrics=args.json)
        if args.json:
            self.out(json.dumps(result, indent=2, sort_keys=True))
        elif args.names:
            for w in result["workloads"]:
                self.out(w["name"])
        else:
            self.out(render.workload_table(result["workloads"]))
            problems = result["daemon"].get("config_problems") or []
            if problems:
                self.out(f"\n{len(problems)} config problem(s); see 'mastercontrol-ctl validate'")
        return EXIT_OK

    def _each(self, verb: Callable[[str], dict[str, Any]], names: list[str]) -> int:
        worst = EXIT_OK
        for name in names:
            try:
                result = verb(name)
            except IPCError as exc:
                self.err(f"{name}: {exc}")
                code = (
                    EXIT_UNKNOWN_WORKLOAD
                    if exc.code == ErrorCode.UNKNOWN_WORKLOAD
                    else EXIT_FAILURE
                )
                worst = max(worst, code)
                continue
            extra = f" ({result['message']})" if result.get("message") else ""
            pid = f" pid {result['pid']}" if result.get("pid") else ""
            self.out(f"{name}: {result['state']}{pid}{extra}")
        return worst

    def cmd_start(self, args: argparse.Namespace) -> int:
        return self._each(self.client.start, args.names)

    def cmd_stop(self, args: argparse.Namespace) -> int:
        return self._each(self.client.stop, args.names)

    def cmd_restart(self, args: argparse.Namespace) -> int:
        return self._each(self.client.restart, args.names)

    def cmd_status(self, args: argparse.Namespace) -> int:
        result = self.client.status(args.name)
        if args.json:
            self.out(json.dumps(result, indent=2, sort_keys=True))
        else:
            self.out(render.status_block(result))
        return EXIT_OK if result["state"] in LIVE_STATES else EXIT_NOT_RUNNING

    def cmd_logs(self, args: argparse.Namespace) -> int:
        if args.lines < 0:
            self.err("-n must be 0 or more")
            return EXIT_USAGE
        try:
            result = self.client.logs(args.name, lines=min(args.lines, 10000))
            path = Path(result["path"])
            lines = result["lines"]
        except DaemonUnreachable:
            # The log files are plain files: readable without the daemon.
            from mastercontrol.logfile import read_tail

            path = self.paths.log_dir / f"{args.name}.log"
            if not path.exists():
                self.err(f"no log for {args.name} in {self.paths.log_dir}")
                return EXIT_UNKNOWN_WORKLOAD
            try:
                lines = read_tail(path, args.lines)
            except OSError as exc:
                self.err(str(exc))
                return EXIT_FAILURE
        for line in lines:
            self.out(line.rstrip("\n"))
        if args.follow:
            follow.follow(path, self.out)
        return EXIT_OK

    def cmd_reload(self, args: argparse.Namespace) -> int:
        try:
            result = self.client.reload(dry_run=args.dry_run)
        except IPCError as exc:
            if exc.code != ErrorCode.INVALID_CONFIG:
                raise
            details = exc.details if isinstance(exc.details, dict) else {}
            self.err("config rejected, nothing changed:")
            for problem in details.get("problems", []):
                print(problem, file=sys.stderr)
            return EXIT_FAILURE
        plan = result["plan"]
        for key, label in (("add", "start"), ("remove", "stop"), ("change", "restart")):
            for name in plan[key]:
                self.out(f"would {label} {name}" if result["dry_run"] else f"{label:8} {name}")
        self.out(f"{len(plan['unchanged'])} unchanged")
        return EXIT_OK

    def cmd_top(self, args: argparse.Namespace) -> int:
        count = 0
        while True:
            result = self.client.workloads(metrics=True)
            ws = result["workloads"]
            rows = []
            for w in ws:
                m = w.get("metrics") or {}
                rows.append(
                    [
                        w["name"],
                        w["state"],
                        str(w["pid"] or "-"),
                        f"{m.get('cpu_percent', 0.0):.1f}" if m else "-",
                        f"{m.get('rss_bytes', 0) / 2**20:.1f}" if m else "-",
                        str(m.get("threads", "-")) if m else "-",
                        str(m.get("fds", "-")) if m else "-",
                        render.duration(w.get("uptime_seconds")),
                    ]
                )
            screen = render.table(
                ["NAME", "STATE", "PID", "CPU%", "RSS MiB", "THR", "FDS", "UPTIME"], rows
            )
            system = result["daemon"].get("system") or {}
            head = f"mastercontrold {result['daemon']['status']}"
            if system:
                mem = system.get("memory", {})
                head += (
                    f" | load {' '.join(f'{x:.2f}' for x in system.get('load', []))}"
                    f" | mem {mem.get('percent', 0):.0f}%"
                )
            if sys.stdout.isatty():
                sys.stdout.write("\x1b[H\x1b[2J")
            self.out(head + "\n" + screen)
            count += 1
            if args.iterations and count >= args.iterations:
                return EXIT_OK
            time.sleep(max(0.2, args.interval))

    # ------------------------------------------------------------------ offline

    def cmd_validate(self, args: argparse.Namespace) -> int:
        # Imported here: the config loader pulls in yaml and croniter, which the commands that
        # only talk to the daemon do not need (they start in a fraction of the time).
        from mastercontrol.config.load import DAEMON_FILE, load_config_dir, load_inventory
        from mastercontrol.config.secrets import token_warnings

        configs = load_config_dir(self.paths.config_dir)
        problems = list(configs.problems)
        inventory_path = self.paths.config_dir / "inventory.yaml"
        if inventory_path.exists():
            # Checked here too, though it never blocks the workloads from loading.
            problems += load_inventory(inventory_path)[1]
        for problem in problems:
            self.out(problem)
        # Warnings do not fail validate: a token file may be readable by the daemon's user only.
        for warning in token_warnings(configs.daemon, self.paths.config_dir / DAEMON_FILE):
            self.out(warning)
        if problems:
            return EXIT_FAILURE
        self.out(f"OK: {len(configs.workloads)} workloads in {self.paths.config_dir}")
        return EXIT_OK

    def cmd_systemd_unit(self, args: argparse.Namespace) -> int:
        try:
            rendered = systemd_unit.render()
            if args.install is None:
                self.out(rendered.unit.rstrip("\n"))
                return EXIT_OK
            written = systemd_unit.install(
                rendered, Path(args.install), hardening=not args.no_hardening
            )
        except (systemd_unit.UnitError, OSError) as exc:
            self.err(str(exc))
            return EXIT_FAILURE
        for path in written:
            self.out(f"wrote {path}")
        self.out("next: systemctl daemon-reload && systemctl enable --now mastercontrold")
        return EXIT_OK

    def cmd_run(self, args: argparse.Namespace) -> int:
        from mastercontrol.child.oneshot import run_foreground
        from mastercontrol.child.spawn import ChildSpec
        from mastercontrol.config.load import load_config_dir

        configs = load_config_dir(self.paths.config_dir)
        cfg = configs.workloads.get(args.name)
        if cfg is None:
            mine = [p for p in configs.problems if f"{args.name}" in p]
            for problem in mine:
                self.err(problem)
            self.err(f"no valid workload named {args.name} in {self.paths.config_dir}")
            return EXIT_UNKNOWN_WORKLOAD
        return run_foreground(ChildSpec.from_config(cfg), cfg.timeout, cfg.stop_timeout)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    ctl = Ctl(paths_from_args(args))
    handler = getattr(ctl, f"cmd_{args.command.replace('-', '_')}")
    try:
        code: int = handler(args)
        return code
    except DaemonUnreachable as exc:
        ctl.err(str(exc))
        return EXIT_UNREACHABLE
    except IPCError as exc:
        ctl.err(str(exc))
        return EXIT_UNKNOWN_WORKLOAD if exc.code == ErrorCode.UNKNOWN_WORKLOAD else EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
