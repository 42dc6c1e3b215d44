"""The zygote (child/zygote.py): Python runs forked by a small fork server, parented by the master.

Real daemons started as the installed `mastercontrold` is (mastercontrol.daemon.entry: the
zygote forked before the daemon's imports). A run is the master's child and its exit is
recorded at once; kill -9 of the zygote disturbs no running run and later starts still work
(forked by the master, then by a new zygote); an orphan a run leaves becomes the master's
(it is a child subreaper) and is reaped, no zombie stays; a run the master gave up on never
runs; MCTL_NO_ZYGOTE=1 turns it all off.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from mastercontrol.engine.exitstatus import CHILD_EXIT_SETUP_FAILED
from tests.integration.harness import REPO, Daemon, pid_alive, wait_for

ZYGOTE = "mc-zygote"
# The fault suite also runs whole with MCTL_NO_ZYGOTE=1 (the documented switch): then the
# zygote's own tests have nothing to test.
needs_zygote = pytest.mark.skipif(
    os.environ.get("MCTL_NO_ZYGOTE", "") not in ("", "0"), reason="MCTL_NO_ZYGOTE is set"
)


def _zygotes(daemon: Daemon) -> list[psutil.Process]:
    return [c for c in psutil.Process(daemon.pid).children() if c.name() == ZYGOTE]


def _zombie_pids(daemon: Daemon) -> set[int]:
    found = set()
    for child in psutil.Process(daemon.pid).children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                found.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return found


def _zombies(daemon: Daemon, settle: float = 1.0) -> list[int]:
    """Children of the master that stay zombies: seen in two looks `settle` seconds apart.

    A child that has just exited is a zombie until the loop's next turn reaps it (a health
    check every 0.2 s is one at any instant with some luck), so one look is not a finding. A
    pid cannot be reused while its zombie exists, so the same pid in both looks is the same
    unreaped child.
    """
    first = _zombie_pids(daemon)
    if not first:
        return []
    time.sleep(settle)
    return sorted(first & _zombie_pids(daemon))


def _running_pid(daemon: Daemon, name: str, other_than: int | None = None) -> int:
    def check() -> int | None:
        st = daemon.status(name)
        pid = st.get("pid")
        if st["state"] == "RUNNING" and pid and pid != other_than and pid_alive(pid):
            return int(pid)
        return None

    pid: int = wait_for(check, what=f"{name} running (not pid {other_than})")
    return pid


def _run_rows(daemon: Daemon, name: str) -> list[tuple[int | None, int | None, str | None]]:
    with sqlite3.connect(daemon.db_path) as db:
        rows = db.execute(
            "SELECT pid, signal, reason FROM runs WHERE workload = ? ORDER BY id", (name,)
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def _daemon_log(daemon: Daemon) -> str:
    path = daemon.log_dir / "mastercontrold.log"
    return path.read_text(errors="replace") if path.exists() else ""


@needs_zygote
def test_a_python_run_is_forked_by_the_zygote_and_is_the_masters_child(daemon: Daemon) -> None:
    daemon.workload("svc", "sleep_forever")
    daemon.start(entry=True)
    pid = _running_pid(daemon, "svc")
    run = psutil.Process(pid)
    assert run.ppid() == daemon.pid
    # Forked from the zygote, which was forked before the daemon imported pyyaml's C parser:
    # a run forked by the master itself has it mapped.
    assert "_yaml" in Path(f"/proc/{daemon.pid}/maps").read_text()
    assert "_yaml" not in Path(f"/proc/{pid}/maps").read_text()
    (zygote,) = _zygotes(daemon)
    assert run.name() != ZYGOTE  # named like the master, as a run it forked would be
    assert set(daemon.workloads()) == {"svc"}  # the zygote is no workload
    # The master reaps the run's exit at once: the run row says how it ended, a new run is up.
    os.kill(pid, signal.SIGKILL)
    new = _running_pid(daemon, "svc", other_than=pid)
    assert psutil.Process(new).ppid() == daemon.pid
    wait_for(lambda: (pid, 9, "signal") in _run_rows(daemon, "svc"), what="the run row ended")
    assert not _zombies(daemon)
    assert zygote.is_running()


@needs_zygote
def test_kill_9_of_the_zygote_disturbs_no_run_and_later_starts_still_work(
    daemon: Daemon,
) -> None:
    daemon.workload("a", "sleep_forever")
    daemon.workload("b", "sleep_forever", restart_delay=0, start_seconds=0)
    daemon.start(entry=True)
    a, b = _running_pid(daemon, "a"), _running_pid(daemon, "b")
    (zygote,) = _zygotes(daemon)
    zygote.kill()
    wait_for(lambda: not _zygotes(daemon) and not _zombies(daemon), what="zygote reaped")
    assert pid_alive(a) and pid_alive(b)
    assert daemon.status("a")["pid"] == a
    # The next start is forked by the master (the zygote failed less than RESTART_BACKOFF ago
    # or not: either way it runs); a later one brings a new zygote.
    os.kill(b, signal.SIGKILL)
    b2 = _running_pid(daemon, "b", other_than=b)
    assert psutil.Process(b2).ppid() == daemon.pid

    def restarted_with_a_new_zygote() -> bool:
        nonlocal b2
        os.kill(b2, signal.SIGKILL)
        b2 = _running_pid(daemon, "b", other_than=b2)
        return bool(_zygotes(daemon)) and zygote.pid not in [z.pid for z in _zygotes(daemon)]

    # The new zygote is forked at a start (lazily): that start went through it.
    wait_for(restarted_with_a_new_zygote, interval=0.5, what="a new zygote")
    assert psutil.Process(b2).ppid() == daemon.pid
    assert pid_alive(a) and daemon.status("a")["pid"] == a
    assert "forking runs from the master until a new zygote is up" in _daemon_log(daemon)
    assert not _zombies(daemon)


@needs_zygote
def test_an_orphan_a_run_leaves_is_adopted_and_reaped(daemon: Daemon, tmp_path: Path) -> None:
    pidfile = tmp_path / "orphan.pid"
    # The subshell starts a setsid'd sleep and exits: the sleep is orphaned while the run goes
    # on, and exits by itself a little later.
    script = f"(setsid sleep 2 & echo $! > {pidfile}); exec sleep 3600"
    body = {"name": "parent", "type": "service", "command": ["sh", "-c", script]}
    daemon.write("parent.yaml", json.dumps(body))
    daemon.start(entry=True)
    _running_pid(daemon, "parent")
    orphan = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip()))
    try:
        assert psutil.Process(orphan).ppid() == daemon.pid  # the master is a child subreaper
    except psutil.NoSuchProcess:
        pass  # already gone: then it must not stay a zombie either
    wait_for(lambda: not psutil.pid_exists(orphan), what="the orphan reaped")
    assert not _zombies(daemon)
    assert daemon.status("parent")["state"] == "RUNNING"


def test_mctl_no_zygote_forks_from_the_master(daemon: Daemon) -> None:
    daemon.workload("svc", "sleep_forever")
    daemon.start(entry=True, env={"MCTL_NO_ZYGOTE": "1"})
    pid = _running_pid(daemon, "svc")
    assert psutil.Process(pid).ppid() == daemon.pid
    assert "_yaml" in Path(f"/proc/{pid}/maps").read_text()
    assert not _zygotes(daemon)


@pytest.mark.parametrize("mode", ["zygote", "no-zygote"])
def test_a_health_command_is_not_stolen_by_the_orphan_reaper(daemon: Daemon, mode: str) -> None:
    # Health-check commands are the master's children that their Popen reaps: the reaper of
    # adopted orphans must leave them alone, or every check would end "exit status lost".
    body = {
        "name": "svc",
        "type": "service",
        "module": "tests.integration.workloads",
        "entry_point": "sleep_forever",
        "health_check": {"command": ["true"], "interval": 0.2, "timeout": 5},
    }
    daemon.write("svc.yaml", json.dumps(body))
    env = {"MCTL_NO_ZYGOTE": "1"} if mode == "no-zygote" else {}
    daemon.start(entry=True, env=env)
    pid = _running_pid(daemon, "svc")

    def last_check() -> str | None:
        health = daemon.status("svc").get("health") or {}
        message: str | None = health.get("last_message")
        return message

    wait_for(lambda: last_check() == "exit status 0", what="a passing check")
    time.sleep(2.0)  # ~10 more checks, each a child of the master that exits
    assert last_check() == "exit status 0"
    health = daemon.status("svc")["health"]
    assert health["consecutive_failures"] == 0, health
    assert daemon.status("svc")["pid"] == pid
    assert not _zombies(daemon)


# A master's end of the zygote in a process of its own (it becomes a child subreaper): a run
# whose go pipe is closed without the byte (the master gave up on the reply) runs nothing and
# exits 120; the next run, with its go, runs once and is this process's child.
ABANDON = """
import os, pickle, socket, sys
from mastercontrol.child import zygote
from mastercontrol.child.spawn import ChildSpec, workload_env
marker = sys.argv[1]
z = zygote.start()
spec = ChildSpec(name="t", module="tests.integration.workloads", entry_point="count_run",
                 params={"marker": marker})
log_r, log_w = os.pipe()
go_r, go_w = os.pipe()
socket.send_fds(z.sock, [pickle.dumps((1, spec, workload_env(spec)))], [log_w, go_r])
os.close(log_w)
os.close(go_r)
abandoned = z._reply(z.sock, 1)
os.close(go_w)  # no go
_, status = os.waitpid(abandoned, 0)  # the run is this process's child: the subreaper's
run = z.spawn(spec)
_, run_status = os.waitpid(run.pid, 0)
print(abandoned, os.waitstatus_to_exitcode(status), run.pid, os.waitstatus_to_exitcode(run_status))
"""


@needs_zygote
def test_a_run_the_master_gave_up_on_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, "-c", ABANDON, str(marker)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    abandoned, abandoned_code, run, run_code = (int(x) for x in done.stdout.split())
    assert abandoned_code == CHILD_EXIT_SETUP_FAILED
    assert run_code == 0
    assert marker.read_text().split() == [str(run)] != [str(abandoned)]  # it never ran
