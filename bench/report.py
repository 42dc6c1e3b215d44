"""The comparison table, the machine facts, and bench/RESULTS.md.

Turns two result dicts (one per supervisor) into rows with a ratio and a verdict against the
issue's targets. RESULTS.md is regenerated on every full run, except the text below
ANALYSIS_MARKER, which is hand-written (profiles, causes, fixes) and kept. Imports the
standard library, psutil and the bench's own modules.
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.scenarios import Results, Sizes

ANALYSIS_MARKER = "<!-- Hand-written analysis below this line is kept when run.py rewrites -->"


@dataclass(frozen=True)
class Row:
    scenario: str
    figure: str
    key: str
    unit: str
    scale: float = 1.0  # stored value * scale = shown value
    op: str = ""  # "<=" or ">=" for the ratio MC/supervisord, "" = no target
    target: float = 0.0
    absolute: bool = False  # the target is for Master Control's own shown value, not the ratio

    def values(self, mc: Results, sv: Results) -> tuple[float | None, float | None]:
        a, b = mc.get(self.key), sv.get(self.key)
        return (None if a is None else a * self.scale, None if b is None else b * self.scale)

    def ratio(self, mc: Results, sv: Results) -> float | None:
        a, b = self.values(mc, sv)
        if a is None or b is None or b == 0:
            return None
        return a / b

    def met(self, mc: Results, sv: Results) -> bool | None:
        r = self.values(mc, sv)[0] if self.absolute else self.ratio(mc, sv)
        if not self.op or r is None:
            return None
        return r <= self.target if self.op == "<=" else r >= self.target


def rows(sizes: Sizes) -> list[Row]:
    n_small, n_big = sizes.spawn_counts
    out: list[Row] = []
    for n in (n_small, n_big):
        big = n == n_big
        out += [
            Row("spawn", f"start until all {n} run", f"spawn{n}.time", "s", 1, "<=", 0.2),
            Row("spawn", f"master RSS, {n} workloads", f"spawn{n}.rss", "MiB", 1, "<=", 1),
            Row("spawn", f"tree USS sum, {n} workloads", f"spawn{n}.uss", "MiB", 1,
                "<=" if big else "", 0.5),
            Row("spawn", f"tree PSS sum, {n} workloads", f"spawn{n}.pss", "MiB", 1,
                "<=" if big else "", 0.5),
            Row("spawn", f"tree USS sum after a full GC in each, {n} workloads",
                f"spawn{n}.uss_gc", "MiB", 1, "", 0.5),
        ]  # fmt: skip
    f, c = sizes.fleet, sizes.churn_workloads
    out += [
        Row("idle", f"master CPU in {sizes.idle_seconds:g} s, {f} idle", "idle.cpu", "s", 1,
            "<=", 0.5),
        Row("restart", f"kill -9 to replacement running, median of {sizes.restart_reps}",
            "restart.median", "ms", 1000, "<=", 0.01),
        Row("churn", f"restarts per second, {c} exiting workloads", "churn.rate", "/s", 1,
            ">=", 2),
        Row("churn", f"master CPU in the {sizes.churn_seconds:g} s window", "churn.cpu", "s"),
        Row("churn", "master CPU per restart", "churn.cpu_per_restart_ms", "ms"),
        Row("stop", f"down command until all {f} children gone", "stop.time", "s", 1,
            "<=", 0.02),
        Row("ctl", f"`list` / `status` wall time, median of {sizes.ctl_reps}", "ctl.median",
            "ms", 1000, "<=", 1),
    ]  # fmt: skip
    p, reps = sizes.command_fleet, sizes.command_restart_rounds * sizes.restart_reps
    out += [
        Row("command", f"churn: starts per second, {c} exiting programs", "cmd.churn.rate", "/s",
            1, ">=", 2),
        Row("command", "churn: master CPU per start", "cmd.churn.cpu_per_restart_ms", "ms", 1,
            "<=", 0.5, absolute=True),
        Row("command", f"restart after kill -9, median of {reps}", "cmd.restart.median", "ms",
            1000, "<=", 5, absolute=True),
        Row("command", f"spawn {p} programs, all running", f"cmd.spawn{p}.time", "s", 1,
            "<=", 4.8, absolute=True),
        Row("command", f"tree USS sum, {p} programs", f"cmd.spawn{p}.uss", "MiB"),
        Row("command", f"stop all {p}", "cmd.stop.time", "s", 1, "<=", 0.2, absolute=True),
        Row("command", f"ctl status, {p}", "cmd.ctl.median", "ms", 1000, "<=", 1),
    ]  # fmt: skip
    return out


def _num(v: float | None) -> str:
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 0.1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def table(selected: list[Row], mc: Results, sv: Results, floor: Results | None = None) -> str:
    """Markdown table; also readable as plain text on a terminal. `floor`: bench/floor.py's
    figures (the `command:` rows), shown in their own column; blank where it has none."""
    lines = [
        "| scenario | figure | floor | Master Control | supervisord | ratio MC/sv | target "
        "| met? |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in selected:
        a, b = r.values(mc, sv)
        if a is None and b is None:
            continue
        f = r.values(floor or {}, {})[0]
        f_cell = "" if f is None else f"{_num(f)} {r.unit}"
        met = r.met(mc, sv)
        verdict = (
            ""
            if met is None and not r.op
            else ("n/a" if met is None else ("yes" if met else "**no**"))
        )
        target = f"{r.op} {r.target:g}{' abs' if r.absolute else ''}" if r.op else ""
        lines.append(
            f"| {r.scenario} | {r.figure} | {f_cell} | {_num(a)} {r.unit} | {_num(b)} {r.unit} "
            f"| {_num(r.ratio(mc, sv))} | {target} | {verdict} |"
        )
    return "\n".join(lines)


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        return f"? ({exc})"
    return (done.stdout or done.stderr).strip()


def machine_facts(mc_python: Path, sv_python: Path) -> dict[str, str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    version = [
        "-c", "import sys; print(sys.version.split()[0], sys.executable)",
    ]  # fmt: skip
    load = os.getloadavg()
    return {
        "nproc": str(os.cpu_count()),
        "CPU": model,
        "RAM": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()} {platform.machine()}",
        "Python (Master Control)": _run([str(mc_python), *version]),
        "Python (supervisord)": _run([str(sv_python), *version]),
        "load average at start": " ".join(f"{x:.2f}" for x in load),
        "git commit": _run(["git", "-C", str(mc_python.parents[2]), "rev-parse", "--short",
                            "HEAD"]),
    }  # fmt: skip


def _kept_analysis(path: Path) -> str:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return ""
    at = text.find(ANALYSIS_MARKER)
    return text[at + len(ANALYSIS_MARKER) :].strip("\n") if at >= 0 else ""


def write_results(
    path: Path,
    *,
    command: str,
    date: str,
    facts: dict[str, str],
    body: str,
    notes: list[str],
) -> None:
    kept = _kept_analysis(path)
    parts = [
        "# Benchmark: Master Control against supervisord",
        "",
        "Generated by `bench/run.py`; both supervisors ran the same workload code, in the same run,"
        " on the same machine. Ratio = Master Control / supervisord; targets from the issue"
        ' "Operable and measured", section 4 (the `command:` rows: issue 12); floor ='
        " bench/floor.py, a bare posix_spawn + waitpid supervisor, for the `command:` rows.",
        "",
        f"- Command: `{command}`",
        f"- Date: {date}",
        *(f"- {k}: {v}" for k, v in facts.items()),
        "",
        body,
        "",
        "## Notes (generated)",
        "",
        *(f"- {n}" for n in notes),
        "",
        ANALYSIS_MARKER,
        "",
    ]
    if kept:
        parts += [kept, ""]
    path.write_text("\n".join(parts))
