"""What a forked Python workload copies, by the parent it is forked from: the case for a zygote.

    .venv/bin/python bench/fork_pages.py [--children 3] [--module bench.workloads]

Forks N children from three kinds of parent and prints each child's private memory (USS:
Private_Clean + Private_Dirty of /proc/PID/smaps_rollup) after it imported `--module` and
slept: a bare interpreter with only the child bootstrap's modules loaded (what a small fork
server, a "zygote", would be), the same interpreter after importing what the master imports
(pyyaml, croniter, psutil, sqlite3, the daemon; no state), and a real `mastercontrold` running
N workloads of `--module` (its children measured the same way, through
bench.workloads.report_memory; with its zygote unless MCTL_NO_ZYGOTE=1); and, between those,
children started through the real zygote (child/zygote.py) forked from a bare interpreter,
which run the whole child bootstrap. A child's private pages are the pages of its parent that it
wrote to (reference counts, allocator free lists, its own new objects): the smaller and less
fragmented the parent's heap, the fewer. Imports the standard library and psutil; the
mastercontrold case uses tests/integration/harness.py.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def private_kib(pid: int) -> int:
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean", "Private_Dirty")):
                total += int(line.split()[1])
    return total


def forked(kind: str, module: str, children: int) -> list[int]:
    """In a fresh interpreter of `kind`: fork `children`, each importing `module`."""
    sys.path.insert(0, str(ROOT))
    importlib.import_module("mastercontrol.child.spawn")
    if kind == "heavy":
        for name in ("yaml", "croniter", "psutil", "sqlite3", "mastercontrol.daemon.main"):
            importlib.import_module(name)
    gc.collect()
    gc.freeze()  # as the master does around each fork
    pids = []
    for _ in range(children):
        pid = os.fork()
        if pid == 0:
            importlib.import_module(module)
            time.sleep(30)
            os._exit(0)
        pids.append(pid)
    time.sleep(2.0)
    sizes = [private_kib(p) for p in pids]
    for p in pids:
        os.kill(p, 9)
        os.waitpid(p, 0)
    return sizes


def _reported(out: Path, children: int) -> list[int]:
    """The sizes `children` report_memory workloads appended to `out` (30 s at most)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines = out.read_text().split() if out.exists() else []
        if len(lines) >= children:
            return [int(x) for x in lines]
        time.sleep(0.2)
    raise SystemExit("the workloads never reported")


def served(module: str, children: int) -> list[int]:
    """Children started through the real zygote (mastercontrol.child.zygote, its whole
    bootstrap), forked from a bare interpreter as mastercontrol.daemon.entry forks it; each
    runs bench.workloads.report_memory, which imports `module` and reports its USS."""
    sys.path.insert(0, str(ROOT))
    from mastercontrol.child import zygote
    from mastercontrol.child.spawn import ChildSpec

    out = Path(tempfile.mkdtemp(prefix="fork-pages-")) / "sizes.txt"
    forks = zygote.start()
    assert forks is not None, "MCTL_NO_ZYGOTE is set"
    params = {"out": str(out), "module": module}
    runs = [
        forks.spawn(ChildSpec(name=f"m{i}", module="bench.workloads",
                              entry_point="report_memory", params=params))
        for i in range(children)
    ]  # fmt: skip
    try:
        return _reported(out, children)
    finally:
        for run in runs:
            os.killpg(run.pid, 9)
            os.waitpid(run.pid, 0)
            os.close(run.log_fd)
        forks.close()


def in_daemon(module: str, children: int) -> list[int]:
    """Children of a real mastercontrold, each measuring itself at its entry point."""
    sys.path.insert(0, str(ROOT))
    from tests.integration.harness import Daemon

    tmp = Path(tempfile.mkdtemp(prefix="fork-pages-"))
    out = tmp / "sizes.txt"
    daemon = Daemon(tmp)
    for i in range(children):
        body = {
            "name": f"m{i}",
            "type": "service",
            "module": "bench.workloads",
            "entry_point": "report_memory",
            "params": {"out": str(out), "module": module},
        }
        daemon.write(f"m{i}.yaml", json.dumps(body))
    daemon.start()
    try:
        return _reported(out, children)
    finally:
        daemon.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--children", type=int, default=3)
    ap.add_argument("--module", default="bench.workloads")
    ap.add_argument(
        "--kind", choices=("zygote", "heavy", "served", "daemon"), help=argparse.SUPPRESS
    )
    args = ap.parse_args(argv)
    if args.kind:
        kinds = {"daemon": in_daemon, "served": served}
        run = kinds.get(args.kind, lambda m, n: forked(args.kind, m, n))
        sizes = run(args.module, args.children)
        print(json.dumps(sizes))
        return 0
    print(f"module {args.module}, {args.children} children per parent; child USS in MiB")
    for kind, what in (
        ("zygote", "bare interpreter + the child bootstrap's modules (a zygote)"),
        ("heavy", "+ everything the master imports, no state"),
        ("served", "through child/zygote.py (its whole bootstrap)"),
        ("daemon", "a real mastercontrold"),
    ):
        cmd = [sys.executable, __file__, "--kind", kind, "--module", args.module,
               "--children", str(args.children)]  # fmt: skip
        sizes = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                          cwd=ROOT).stdout.splitlines()[-1])  # fmt: skip
        shown = ", ".join(f"{s / 1024:.2f}" for s in sorted(sizes))
        print(f"  {what:<62} {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
