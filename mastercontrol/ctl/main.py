"""mastercontrol-ctl: argparse subcommands -> IPC calls -> output and exit codes.

The parser is in mastercontrol.ctl.parser, selection and `--wait` in mastercontrol.ctl.targets.
Exit codes (supervisorctl/LSB): 0 ok, 1 failure, 2 usage error, 3 `status` of a workload that is
not running, 4 unknown workload, 7 daemon not reachable, 130 interrupted. `validate` and `run`
work without a daemon. Imports the stdlib and the package's own modules only; what only some
commands need (subprocess, the renderer, `logs -f`) is imported by those commands, so `down`
and the other short ones start faster (`python -X importtime`).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mastercontrol.config.paths import Paths, paths_from_args
from mastercontrol.ctl.parser import build_parser as build_parser  # the man page tests use it
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
            "mastercontrol.daemon.entry",
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
        if args.accept_lost_state:
            argv.append("--accept-lost-state")
        if not args.detach:
            os.execv(sys.executable, argv)
        self.paths.log_dir.mkdir(parents=True, exist_ok=True)
        # One log: the detached daemon logs to mastercontrold.log only (rotated). Its stderr
        # file, emptied at each start, keeps what comes before logging is set up (a bad
        # config dir, a startup traceback), so it stays small.
        argv.append("--no-stderr-log")
        import subprocess

        errlog = self.paths.log_dir / "mastercontrold.stderr"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        with open(os.open(errlog, flags, 0o600), "wb") as err, open(os.devnull, "rb") as devnull:
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
        if _wait_exit(pid, 120.0, lambda: not self.paths.socket_path.exists()):
            self.out("mastercontrold stopped")
            return EXIT_OK
        self.err(f"mastercontrold (pid {pid}) is still stopping")
        return EXIT_FAILURE

    # ------------------------------------------------------------------ workloads

    def cmd_list(self, args: argparse.Namespace) -> int:
        from mastercontrol.ctl import render

        # --json: fresh CPU/memory samples; the table does not show them
        result = self.client.workloads(tag=args.tag or None, metrics=args.json)
        if args.json:
            self.out(json.dumps(result, indent=2, sort_keys=True))
        elif args.names:
            for w in result["workloads"]:
                self.out(w["name"])
        else:
            self.out(render.workload_table(result["workloads"]))
            degraded = result["daemon"].get("degraded")
            if degraded:
                self.out("\n" + render.degraded_block(degraded))
            problems = result["daemon"].get("config_problems") or []
            if problems:
                self.out(f"\n{len(problems)} config problem(s); see 'mastercontrol-ctl validate'")
        return EXIT_OK

    def _each(self, args: argparse.Namespace, verb: Callable[[str], dict[str, Any]]) -> int:
        from mastercontrol.ctl import targets

        if not args.names and not args.tag:
            self.err(f"{args.command}: name at least one workload, '{targets.ALL}', or --tag TAG")
            return EXIT_USAGE
        # Every name is checked before anything changes: an unknown one stops nothing.
        chosen = targets.select(args.names, args.tag, self._views())
        if not chosen.ok:
            for name in chosen.unknown:
                self.err(f"no such workload: {name}")
            for tag in chosen.empty_tags:
                self.err(f"no workload has tag {tag!r}")
            self.err("nothing changed")
            return EXIT_UNKNOWN_WORKLOAD
        if not chosen.names:
            self.out("no workloads")
            return EXIT_OK
        worst = EXIT_OK
        acted: list[str] = []
        for name in chosen.names:
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
            acted.append(name)
            extra = f" ({result['message']})" if result.get("message") else ""
            pid = f" pid {result['pid']}" if result.get("pid") else ""
            self.out(f"{name}: {result['state']}{pid}{extra}")
        if args.wait and acted:
            worst = max(worst, self._wait(args.command != "stop", acted, args.timeout))
        return worst

    def _views(self) -> dict[str, dict[str, Any]]:
        return {w["name"]: w for w in self.client.workloads()["workloads"]}

    def _wait(self, up: bool, names: list[str], timeout: float) -> int:
        from mastercontrol.ctl import targets

        waited = targets.wait(up, names, self._views, timeout)
        for name in waited.failed:
            self.err(f"{name}: did not come up ({waited.states[name]})")
        if waited.pending:
            late = ", ".join(f"{n} ({waited.states[n]})" for n in waited.pending)
            self.err(
                f"timed out after {timeout:g}s waiting for {'up' if up else 'stopped'}: {late}"
            )
        if not waited.ok:
            return EXIT_FAILURE
        for name in names:
            self.out(f"{name}: {waited.states[name]}")
        return EXIT_OK

    def cmd_start(self, args: argparse.Namespace) -> int:
        return self._each(args, self.client.start)

    def cmd_stop(self, args: argparse.Namespace) -> int:
        return self._each(args, self.client.stop)

    def cmd_restart(self, args: argparse.Namespace) -> int:
        return self._each(args, self.client.restart)

    def cmd_signal(self, args: argparse.Namespace) -> int:
        return self._each(args, lambda name: self.client.signal(name, args.signal))

    def cmd_status(self, args: argparse.Namespace) -> int:
        from mastercontrol.ctl import render

        result = self.client.status(args.name)
        if args.json:
            self.out(json.dumps(result, indent=2, sort_keys=True))
        else:
            self.out(render.status_block(result))
        return EXIT_OK if result["state"] in LIVE_STATES else EXIT_NOT_RUNNING

    def cmd_logs(self, args: argparse.Namespace) -> int:
        try:
            result = self.client.logs(args.name, lines=min(args.lines, 10000))
            path = Path(result["path"])
            lines = result["lines"]
        except DaemonUnreachable:
            # The log files are plain files: readable without the daemon.
            from mastercontrol.logfile import read_tail

            path = self.paths.log_dir / f"{args.name}.log"
            if not path.exists() and not self._configured(args.name):
                self.err(
                    f"no such workload: {args.name} (no config for it in {self.paths.config_dir})"
                )
                return EXIT_UNKNOWN_WORKLOAD
            try:
                lines = read_tail(path, args.lines)
            except OSError as exc:
                self.err(str(exc))
                return EXIT_FAILURE
        for line in lines:
            self.out(line.rstrip("\n"))
        if args.follow:
            from mastercontrol.ctl import follow

            follow.follow(path, self.out)
        return EXIT_OK

    def _configured(self, name: str) -> bool:
        """Whether the config dir has a file for `name` (a file with problems counts too)."""
        from mastercontrol.config.load import load_config_dir

        if any((self.paths.config_dir / f"{name}{ext}").is_file() for ext in (".yaml", ".yml")):
            return True
        return name in load_config_dir(self.paths.config_dir).workloads

    def cmd_reset(self, args: argparse.Namespace) -> int:
        if args.all == bool(args.name):
            self.err("reset: name one workload, or --all")
            return EXIT_USAGE
        if args.all:
            result = self.client.reset()
            released = result.get("released") or []
            self.out(f"lost state accepted; released: {', '.join(released) or 'none'}")
            return EXIT_OK
        result = self.client.reset(args.name)
        pid = f" pid {result['pid']}" if result.get("pid") else ""
        self.out(f"{args.name}: {result['state']}{pid} ({result['message']})")
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
        from mastercontrol.ctl import render

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
            time.sleep(args.interval)

    # ------------------------------------------------------------------ offline

    def cmd_validate(self, args: argparse.Namespace) -> int:
        # Imported here: the config loader pulls in yaml and croniter, which the commands that
        # only talk to the daemon do not need (they start in a fraction of the time).
        from mastercontrol.config.load import DAEMON_FILE, load_config_dir, load_inventory
        from mastercontrol.config.secrets import inventory_token_warnings, token_warnings

        configs = load_config_dir(self.paths.config_dir)
        problems = list(configs.problems)
        inventory_path = self.paths.config_dir / "inventory.yaml"
        inventory_warnings: list[str] = []
        if inventory_path.exists():
            # Checked here too, though it never blocks the workloads from loading.
            inventory, inventory_problems = load_inventory(inventory_path)
            problems += inventory_problems
            inventory_warnings = inventory_token_warnings(configs.daemon, inventory)
        for problem in problems:
            self.out(problem)
        # Warnings do not fail validate: a token file may be readable by the daemon's user only.
        for warning in configs.warnings:
            self.out(warning)
        for warning in token_warnings(configs.daemon, self.paths.config_dir / DAEMON_FILE):
            self.out(warning)
        for warning in inventory_warnings:
            self.out(warning)
        if problems:
            return EXIT_FAILURE
        self.out(f"OK: {len(configs.workloads)} workloads in {self.paths.config_dir}")
        return EXIT_OK

    def cmd_systemd_unit(self, args: argparse.Namespace) -> int:
        from mastercontrol.ctl import systemd_unit

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


def _wait_exit(pid: int, timeout: float, gone: Callable[[], bool]) -> bool:
    """Wait until process `pid` has exited or `gone()` says so; False after `timeout` s.

    A pidfd (Linux 5.3+) becomes readable the moment the process exits, so `down` returns then
    and not at the next poll (it polled every 50 ms: half of that, on average, was added to
    every stop); `gone` is still asked every 20 ms. Without pidfds it polls with kill(pid, 0).
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except (OSError, AttributeError):  # no pidfd here (or not ours to open): poll
        fd = -1
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if fd >= 0:
                if select.select([fd], [], [], 0.02)[0]:
                    return True
            else:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return True
                except PermissionError:
                    pass
                time.sleep(0.02)
            if gone():
                return True
        return False
    finally:
        if fd >= 0:
            os.close(fd)


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
