"""`make bench`: run every scenario on Master Control and on supervisord, print and record.

Installs supervisor 4.3.x into bench/.venv-supervisor if missing, runs each scenario on both
tools (alternating, in one run, on this machine), prints the table and, for a full run, writes
bench/RESULTS.md. Every process it starts is killed on exit, Ctrl-C or SIGTERM included.
Imports the standard library and the bench's own modules.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` and the workloads importable
    sys.path.insert(0, str(ROOT))

from bench import history_growth, procs, report  # noqa: E402
from bench.drivers import (  # noqa: E402
    MC_BIN,
    SV_VENV,
    Driver,
    Floor,
    MasterControl,
    Supervisord,
    ensure_supervisor,
)
from bench.scenarios import BenchError, Results, Sizes, churn, fleet  # noqa: E402

SCENARIOS = ("spawn", "idle", "restart", "churn", "stop", "ctl", "command", "command-churn",
             "history")  # fmt: skip
FLEET_MEASURES = {"idle", "restart", "stop", "ctl"}


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # the same cleanup path as Ctrl-C


class Bench:
    def __init__(self, run_dir: Path, sizes: Sizes) -> None:
        self.run_dir = run_dir
        self.sizes = sizes
        self.results: dict[str, Results] = {"mc": {}, "sv": {}, "floor": {}}
        self.errors: list[str] = []
        self.active: list[Driver] = []

    def _drivers(self, tag: str, floor: bool) -> list[tuple[str, Driver]]:
        out: list[tuple[str, Driver]] = [
            ("mc", MasterControl(self.run_dir / f"{tag}-mc")),
            ("sv", Supervisord(self.run_dir / f"{tag}-sv")),
        ]
        if floor:  # the `command:` rows: bench/floor.py in the same run
            out.append(("floor", Floor(self.run_dir / f"{tag}-floor")))
        return out

    def _each(
        self, tag: str, what: str, body: Callable[[Driver, Path], Results], floor: bool = False
    ) -> None:
        for key, drv in self._drivers(tag, floor):
            _log(f"{what}: {drv.label} ...")
            self.active.append(drv)
            t0 = time.monotonic()
            try:
                self.results[key].update(body(drv, self.run_dir / f"{tag}-{key}"))
            except BenchError as exc:
                self.errors.append(f"{what} on {drv.label}: {exc}")
                _log(f"  FAILED: {exc}")
            finally:
                drv.cleanup()
                self.active.remove(drv)
            _log(f"  done in {time.monotonic() - t0:.1f}s")

    def run(self, selected: set[str]) -> None:
        s = self.sizes
        for n in s.spawn_counts:
            measure = FLEET_MEASURES & selected if n == s.fleet else set()
            if "spawn" not in selected and not measure:
                continue
            label = f"fleet of {n}" + (f" ({', '.join(sorted(measure))})" if measure else "")
            self._each(f"fleet{n}", label, self._fleet(n, measure))
        if "churn" in selected:
            self._each("churn", "churn", lambda d, w: churn(d, w, self.sizes))
        if "command" in selected:
            n = s.command_fleet
            label = f"command: fleet of {n} (spawn, restart x{s.command_restart_rounds}, ctl, stop)"

            def cmd_fleet(d: Driver, w: Path) -> Results:
                measure = {"restart", "stop"} | (set() if isinstance(d, Floor) else {"ctl"})
                return fleet(d, w, n, measure, s, command=True)

            self._each("cmdfleet", label, cmd_fleet, floor=True)
        if "command-churn" in selected:
            self._each("cmdchurn", "command: churn", lambda d, w: churn(d, w, s, command=True),
                       floor=True)  # fmt: skip

    def _fleet(self, n: int, measure: set[str]) -> Callable[[Driver, Path], Results]:
        return lambda drv, workdir: fleet(drv, workdir, n, measure, self.sizes)

    def cleanup(self) -> None:
        for drv in self.active:
            drv.cleanup()
        procs.sweep(str(self.run_dir))


def _notes(results: dict[str, Results], errors: list[str], misses: list[str]) -> list[str]:
    notes = [f"Scenario failed: {e}" for e in errors]
    notes += [f"Target missed: {m} (see the analysis below)" for m in misses]
    for key, label in (("mc", "Master Control"), ("sv", "supervisord"), ("floor", "floor")):
        r = results[key]
        for pre in ("", "cmd."):
            if f"{pre}restart.min" in r:
                notes.append(
                    f"{label} {pre}restart latency min/max: "
                    f"{1000 * (r[pre + 'restart.min'] or 0):.1f} / "
                    f"{1000 * (r[pre + 'restart.max'] or 0):.1f} ms"
                )
        for k in sorted(r):
            if k.endswith(".procs"):
                notes.append(f"{label} {k.split('.')[0]}: {r[k]:.0f} processes in the tree")
        for pre in ("", "cmd."):
            if r.get(f"{pre}churn.not_running"):
                notes.append(f"{label} {pre}churn: {r[pre + 'churn.not_running']:.0f} "
                             "workloads ended in BACKOFF/FATAL")  # fmt: skip
    notes += [
        "Readiness = the workload itself appended its byte to a shared file (its code runs) AND "
        "the supervisor reports every workload RUNNING; restart latency = kill -9 until the "
        "replacement appended its byte (polled every 1 ms).",
        "Memory: USS and PSS summed over the master and all its descendants "
        "(psutil memory_full_info); master CPU = user+system of the master only, never its "
        "reaped children.",
        "Master Control: restart_delay 0, start_seconds 0; supervisord: startsecs=0, "
        "autorestart=true; both write each workload's output to NAME.log and use their default "
        "log levels. Workloads of both run on the project's .venv Python.",
        "command: rows: exec'd programs (Master Control `command:`, supervisord `command=`): "
        "`python3 -I -S bench/sleeper.py idle READY` (the interpreter by absolute path) for the "
        "fleet (ready = its byte appended), "
        "`/bin/sh -c 'printf . >>FILE'` for churn; restart = median of "
        "rounds x reps kill -9s; targets marked 'abs' are the issue's absolute figures for "
        "Master Control on this machine, not ratios.",
        "floor column (command: rows): bench/floor.py, a bare supervisor in Python: posix_spawn "
        "(own session, output appended to NAME.log), one pidfd per child in one epoll, "
        "waitpid by pid, restart at once; no database, log lines, PDEATHSIG, rlimits or "
        "cgroups. Same programs and readiness; `stop` = SIGTERM to it (no control command).",
        "The machine is shared with other jobs (see load average); ratios are more stable than "
        "absolute figures.",
    ]
    return notes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small N and short windows (smoke)")
    ap.add_argument("--only", choices=SCENARIOS, action="append", help="run only this scenario")
    ap.add_argument("--results", type=Path, help="write the Markdown here (default: "
                    "bench/RESULTS.md for a full run, nothing for --quick/--only)")  # fmt: skip
    args = ap.parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    selected = set(args.only or SCENARIOS)
    extra = sys.argv[1:] if argv is None else argv
    command = shlex.join([".venv/bin/python", "bench/run.py", *extra])
    if not extra:
        command = f"make bench  (= {command})"

    signal.signal(signal.SIGTERM, _on_sigterm)
    if selected == {"history"}:  # Master Control's store alone: no supervisord needed
        return history_growth.main(["--seconds", "600"] if args.quick else [])
    sv_version = ensure_supervisor()
    facts = report.machine_facts(MC_BIN / "python", SV_VENV / "bin" / "python")
    facts["supervisor"] = sv_version
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    run_dir = Path(tempfile.mkdtemp(prefix="mcbench-"))
    bench = Bench(run_dir, sizes)
    t0 = time.monotonic()
    try:
        bench.run(selected)
    except KeyboardInterrupt:
        _log("interrupted: cleaning up")
        return 130
    finally:
        bench.cleanup()
        if not bench.errors:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            _log(f"logs kept in {run_dir}")
    facts["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    facts["bench wall time"] = f"{time.monotonic() - t0:.0f} s"

    if "history" in selected:
        _log("history: state database growth under a * * * * * * agent ...")
        history_growth.main(["--seconds", "600"] if args.quick else [])
    mc, sv, floor = bench.results["mc"], bench.results["sv"], bench.results["floor"]
    rows = [
        r
        for r in report.rows(sizes)
        if r.scenario in selected or r.key.startswith(("spawn", "cmd."))
    ]
    body = report.table(rows, mc, sv, floor)
    misses = [f"{r.scenario}: {r.figure}" for r in rows if r.met(mc, sv) is False]
    print(body)
    for e in bench.errors:
        print(f"FAILED: {e}")
    out = args.results
    if out is None and not args.quick and args.only is None:
        out = ROOT / "bench" / "RESULTS.md"
    if out is not None:
        notes = _notes(bench.results, bench.errors, misses)
        report.write_results(out, command=command, date=date, facts=facts, body=body,
                             notes=notes)  # fmt: skip
        _log(f"wrote {out}")
    return 1 if bench.errors else 0


if __name__ == "__main__":
    sys.exit(main())
