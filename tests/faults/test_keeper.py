"""Nothing a workload started outlives the daemon, and nothing innocent dies.

A real mastercontrold is SIGKILLed while its workloads have grandchildren, one of them
setsid'd: the keeper kills them all within moments, with cgroups (where this machine allows
them) and without (MCTL_NO_CGROUP=1, the documented switch to the fallback), and says so in the
daemon log. A daemon started right after the kill comes up normally. The restart sweep leaves
alone a process that reused a dead run's pid.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest

from mastercontrol.child import cgroup
from mastercontrol.child.group import start_ticks
from tests.integration.harness import REPO, Daemon, pid_alive, wait_for

# The reproduction: a background sleep, and a setsid'd shell that leaves a sleep behind.
FAMILY = (
    "sleep 2001 & echo $! >> {pids}; setsid sh -c 'sleep 2003 & echo $! >> {pids}; exit 0' & wait"
)
GONE_WITHIN = 10.0  # generous bound; the keeper acts within ~2 s of the master's death

CGROUPS_HERE = cgroup.usable_base()[0] is not None
MODES = [
    pytest.param(
        {},
        id="cgroup",
        marks=pytest.mark.skipif(not CGROUPS_HERE, reason="cgroup v2 not usable here"),
    ),
    pytest.param({"MCTL_NO_CGROUP": "1"}, id="fallback"),
]


def _family(daemon: Daemon, name: str, tmp_path: Path) -> Path:
    pids = tmp_path / f"{name}.pids"
    body = {"name": name, "type": "service", "command": ["sh", "-c", FAMILY.format(pids=pids)]}
    daemon.write(f"{name}.yaml", json.dumps(body))  # JSON is valid YAML
    return pids


def _grandchildren(pids: Path) -> list[int]:
    found = pids.read_text().split() if pids.exists() else []
    return [int(p) for p in found] if len(found) == 2 else []


def _daemon_log(daemon: Daemon) -> str:
    path = daemon.log_dir / "mastercontrold.log"
    return path.read_text(errors="replace") if path.exists() else ""


@pytest.mark.parametrize("env", MODES)
def test_kill9_of_the_daemon_takes_setsid_grandchildren_along(
    daemon: Daemon, tmp_path: Path, env: dict[str, str]
) -> None:
    pid_files = [_family(daemon, name, tmp_path) for name in ("fam_a", "fam_b")]
    daemon.start(env=env)
    leaders = [daemon.wait_state(name, "RUNNING")["pid"] for name in ("fam_a", "fam_b")]
    grand: list[int] = []
    for f in pid_files:
        grand += wait_for(partial(_grandchildren, f), what=f"grandchildren in {f}")
    assert all(pid_alive(p) for p in grand + leaders)

    daemon.kill9()
    wait_for(
        lambda: not [p for p in grand + leaders if pid_alive(p)],
        timeout=GONE_WITHIN,
        what="every workload process gone after kill -9 of the daemon",
    )
    text = wait_for(lambda: "mastercontrol.keeper" in _daemon_log(daemon) and _daemon_log(daemon))
    for pid in grand:
        assert f"{pid} (sleep 200" in text, text  # the cleanup says what it killed
    if not env:
        base = cgroup.usable_base()[0]
        assert base is not None
        wait_for(lambda: not list(base.glob(f"{cgroup.PREFIX}{daemon.pid}.*")), what="rmdir")

    # A daemon started right after the kill comes up normally (the keeper holds no lock).
    daemon.start(env=env)
    daemon.wait_state("fam_a", "RUNNING")


@pytest.mark.parametrize("env", MODES)
def test_stop_kills_setsid_grandchildren_with_cgroups_and_groups_without(
    daemon: Daemon, tmp_path: Path, env: dict[str, str]
) -> None:
    pids = _family(daemon, "fam", tmp_path)
    daemon.start(env=env)
    daemon.wait_state("fam", "RUNNING")
    background, setsid_one = wait_for(lambda: _grandchildren(pids), what="grandchildren")
    daemon.ctl("stop", "fam")
    wait_for(lambda: not pid_alive(background), timeout=GONE_WITHIN, what="group member gone")
    if not env:  # cgroup.kill reaches the setsid'd one at stop already
        wait_for(lambda: not pid_alive(setsid_one), timeout=GONE_WITHIN, what="setsid'd gone")
    daemon.stop()
    wait_for(lambda: not pid_alive(setsid_one), timeout=GONE_WITHIN, what="keeper at exit")


def test_the_restart_sweep_spares_a_process_that_reused_a_recorded_pid(daemon: Daemon) -> None:
    daemon.workload("svc", "sleep_forever")
    daemon.start()
    daemon.wait_state("svc", "RUNNING")
    assert daemon.stop() == 0
    # A stranger in a process group of its own, as a workload leader would be.
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        started = start_ticks(stranger.pid)
        assert started is not None
        with sqlite3.connect(daemon.db_path) as db:  # the dead daemon's record of a live run
            db.execute(
                "INSERT INTO runs (workload, generation, pid, started_at, pid_started)"
                " VALUES ('svc', 0, ?, ?, ?)",
                (stranger.pid, time.time() - 60, started - 1000),
            )
        daemon.start()
        daemon.wait_state("svc", "RUNNING")
        wait_for(lambda: "not signalled" in _daemon_log(daemon), what="the sweep's note")
        time.sleep(0.5)  # the sweep ran before the daemon answered; give a stray kill a moment
        assert stranger.poll() is None, "the sweep killed a process that reused a recorded pid"
        with sqlite3.connect(daemon.db_path) as db:
            reason = db.execute(
                "SELECT reason FROM runs WHERE pid = ?", (stranger.pid,)
            ).fetchone()[0]
        assert reason == "daemon_lost"
    finally:
        stranger.kill()
        stranger.wait(10)


def test_the_installed_entry_point_forks_the_keeper_before_the_heavy_imports(
    tmp_path: Path,
) -> None:
    # bin/mastercontrold goes through mastercontrol.daemon.entry: the keeper is forked while
    # the process is a bare interpreter, so none of the daemon's modules are loaded in it.
    conf = tmp_path / "conf"
    conf.mkdir()
    args = [
        "--config-dir", str(conf), "--db-path", str(tmp_path / "s.db"),
        "--socket-path", str(tmp_path / "mc.sock"), "--log-dir", str(tmp_path / "log"),
    ]  # fmt: skip
    with open(tmp_path / "err", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "bin" / "mastercontrold"), *args],
            stdout=err,
            stderr=err,
            start_new_session=True,
        )
    try:
        wait_for(lambda: (tmp_path / "mc.sock").exists(), what="daemon up")
        keeper = wait_for(lambda: _keeper_of(proc.pid), what="its keeper")
        maps = Path(f"/proc/{keeper}/maps").read_text()
        assert "_yaml" not in maps  # the C parser pyyaml loads: only the master has it
        # While it waits the keeper is a few lines of sh: a forked Python keeper kept ~5 MiB
        # of pages of its own (those the master touched after the fork).
        assert _private_kib(keeper) < 2048, _private_kib(keeper)
    finally:
        proc.kill()
        proc.wait(10)
    wait_for(lambda: not _keeper_of(proc.pid), timeout=GONE_WITHIN, what="keeper exits")


def _keeper_of(master: int) -> int | None:
    """The keeper of the daemon whose master is `master`: its argv ends with the master's pid."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            comm = Path(f"/proc/{name}/comm").read_text().strip()
            argv = Path(f"/proc/{name}/cmdline").read_bytes().decode(errors="replace").split("\0")
            status = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if comm == "mc-keeper" and str(master) in argv[-3:] and status != "Z":
            return int(name)
    return None


def _private_kib(pid: int) -> int:
    """Its USS: the pages no other process shares."""
    fields = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    private = ("Private_Clean", "Private_Dirty")
    return sum(int(f.split()[1]) for f in fields if f.startswith(private))


def _cgroup_of(pid: int) -> str | None:
    try:
        return cgroup.own_cgroup(Path(f"/proc/{pid}/cgroup").read_text())
    except OSError:
        return None


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


@pytest.mark.skipif(not CGROUPS_HERE, reason="cgroup v2 not usable here")
def test_each_run_is_born_in_a_cgroup_of_its_own_and_the_master_is_in_none_of_them(
    daemon: Daemon,
) -> None:
    """The master waits for each spawn in a fresh cgroup and steps on after it (child/scope.py):
    runs (forked and posix_spawn'ed) and health-check commands each end up in their own, and a
    stop's cgroup.kill never reaches the master."""
    daemon.workload("py", "sleep_forever")
    check = {"command": ["sleep", "0.3"], "interval": 0.1, "timeout": 5, "failures": 100}
    daemon.workload("checked", "sleep_forever", health_check=check)
    daemon.write(
        "cmd.yaml", json.dumps({"name": "cmd", "type": "service", "command": ["sleep", "300"]})
    )
    daemon.start()
    pids = {n: daemon.wait_state(n, "RUNNING")["pid"] for n in ("py", "checked", "cmd")}
    runs = {n: _cgroup_of(p) for n, p in pids.items()}
    master = _cgroup_of(daemon.pid)
    prefix = f"{cgroup.PREFIX}{daemon.pid}."
    assert all(c is not None and Path(c).name.startswith(prefix) for c in runs.values()), runs
    assert len(set(runs.values())) == 3, runs
    assert master is not None and Path(master).name.startswith(prefix), master
    assert master not in runs.values()

    def probe_cgroup() -> str | None:
        for pid in _children(daemon.pid):
            if _cmdline(pid) == ["sleep", "0.3"]:
                return _cgroup_of(pid)
        return None

    probe = wait_for(probe_cgroup, what="a health-check command running")
    assert probe not in runs.values(), (probe, runs)
    # Born where the master was; the master steps on right after the check started.
    wait_for(lambda: _cgroup_of(daemon.pid) != probe, what="the master out of the check's cgroup")

    daemon.ctl("stop", "cmd")  # stop: SIGTERM, then the cgroup.kill after the exit
    daemon.ctl("restart", "py")
    new_py = wait_for(
        lambda: (
            (p := daemon.status("py")["pid"]) != pids["py"]
            and daemon.status("py")["state"] == "RUNNING"
            and p
        ),
        what="py restarted",
    )
    assert _cgroup_of(new_py) not in (*runs.values(), _cgroup_of(daemon.pid))
    assert daemon.proc is not None and daemon.proc.poll() is None  # the master lives on
    daemon.wait_state("cmd", "STOPPED")
    base = cgroup.usable_base()[0]
    assert base is not None
    gone = [runs["cmd"], runs["py"]]
    wait_for(lambda: not any((base / Path(c).name).exists() for c in gone if c), what="rmdir")


@pytest.mark.skipif(not CGROUPS_HERE, reason="cgroup v2 not usable here")
def test_a_daemon_removes_the_cgroups_its_dead_predecessor_left_and_no_one_elses(
    daemon: Daemon, tmp_path: Path
) -> None:
    """kill -9 of the keeper and then of its master leaves their cgroups behind (nobody is left
    to remove them): the next daemon of the same state database removes them at start; a live
    daemon of another state database under the same parent cgroup keeps all of its."""
    base = cgroup.usable_base()[0]
    assert base is not None
    other = Daemon(tmp_path / "other")
    try:
        for d in (daemon, other):
            d.workload("svc", "sleep_forever")
            d.start()
            d.wait_state("svc", "RUNNING")
        dead = sorted(base.glob(f"{cgroup.PREFIX}{daemon.pid}.*"))
        others = sorted(base.glob(f"{cgroup.PREFIX}{other.pid}.*"))
        assert dead and others
        keeper = _keeper_of(daemon.pid)
        assert keeper is not None
        os.kill(keeper, signal.SIGKILL)
        wait_for(lambda: not pid_alive(keeper), what="keeper gone")
        leader = daemon.status("svc")["pid"]
        daemon.kill9()
        wait_for(lambda: not pid_alive(leader), what="the run gone with its master (PDEATHSIG)")
        assert all(p.exists() for p in dead)  # nobody removed them

        daemon.start()
        daemon.wait_state("svc", "RUNNING")
        wait_for(lambda: not any(p.exists() for p in dead), what="the dead daemon's cgroups gone")
        assert all(p.exists() for p in others)  # the other daemon's are untouched
        assert other.status("svc")["state"] == "RUNNING"
        assert "an earlier daemon of this state database left" in _daemon_log(daemon)
    finally:
        other.cleanup()


@pytest.mark.skipif(not CGROUPS_HERE, reason="cgroup v2 not usable here")
def test_a_master_that_cannot_step_on_stays_out_of_run_cgroups_and_says_so_once(
    daemon: Daemon,
) -> None:
    """The daemon's own cgroup allows only two cgroups below it (cgroup.max.descendants): the
    master makes the first run's cgroup and then the second, cannot make a third, goes back to
    its own cgroup and gives later runs markers; stopping the runs (cgroup.kill included) never
    touches the master, and the fallback is logged once, not at every start."""
    base = cgroup.usable_base()[0]
    assert base is not None
    home = base / f"{cgroup.PREFIX}test-home.{os.getpid()}"
    home.mkdir()
    try:
        (home / "cgroup.max.descendants").write_text("2")
        for name in ("a", "b", "c"):
            daemon.workload(name, "sleep_forever")
        daemon.start(cgroup=home)
        pids = {n: daemon.wait_state(n, "RUNNING")["pid"] for n in ("a", "b", "c")}
        cgroups = {n: _cgroup_of(p) for n, p in pids.items()}
        assert cgroups["a"] != cgroups["b"] and cgroups["c"] == f"/{home.name}", cgroups
        for _ in range(3):
            for name in ("a", "b", "c"):
                daemon.ctl("restart", name)
            for name in ("a", "b", "c"):
                daemon.wait_state(name, "RUNNING")
        assert daemon.proc is not None and daemon.proc.poll() is None
        assert _cgroup_of(daemon.pid) == f"/{home.name}"  # out of every run's cgroup
        text = _daemon_log(daemon)
        assert text.count("runs are tracked by process group and marker from now on") == 1, text
        daemon.stop()
    finally:
        daemon.cleanup()
        wait_for(lambda: cgroup.remove(home), what=f"{home} empty and removed")
