"""`fab rollback` across a state-database schema change, against a real sshd and daemon: release
A is this checkout, release B is this checkout with one more (additive) migration, built into a
wheel of its own. After B migrated the client's database, the rollback's A daemon opens it as it
is (store/migrations.py COMPATIBLE_FROM): it runs, its workloads run, and the n_times script's
count is neither lost nor repeated. B changes only the project's wheel, so its venv reuses A's
dependency layer (contrib/bootstrap.sh: pip installs the one wheel), and each venv still runs
its own code."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from mastercontrol.deploy import build
from mastercontrol.store.migrations import LATEST_VERSION
from tests.deploy.fleet import Client, Fleet, copy_project, wait_code
from tests.integration.harness import REPO, wait_for

# Appended to release B's migrations.py: one additive step that declares this checkout's schema
# compatible, as the rule asks of every future additive migration.
ONE_MORE_MIGRATION = """
MIGRATIONS = (*MIGRATIONS, ("ALTER TABLE runs ADD COLUMN note TEXT",))
COMPATIBLE_FROM = (*COMPATIBLE_FROM, LATEST_VERSION)
LATEST_VERSION = len(MIGRATIONS)
"""


def newer_schema_project(dest: Path, wheelhouse_cache: Path) -> Path:
    """A copy of this checkout with one more migration, and its wheelhouse in the cache: the
    session's wheels with only the mastercontrol wheel rebuilt (no index needed)."""
    copy_project(dest)
    with (dest / "mastercontrol" / "store" / "migrations.py").open("a") as f:
        f.write(ONE_MORE_MIGRATION)
    wheel_dir = dest.parent / f"{dest.name}-wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--wheel-dir", str(wheel_dir), str(dest)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    shutil.rmtree(dest / "build", ignore_errors=True)
    ours = wheelhouse_cache / build.source_hash(REPO)
    theirs = wheelhouse_cache / build.source_hash(dest)
    shutil.rmtree(theirs, ignore_errors=True)
    shutil.copytree(ours, theirs, ignore=shutil.ignore_patterns("mastercontrol-*.whl"))
    (wheel,) = wheel_dir.glob("mastercontrol-*.whl")
    shutil.copy2(wheel, theirs / wheel.name)
    return dest


def schema_version(client: Client, db: str = "state.db") -> int:
    conn = sqlite3.connect(f"file:{client.install_dir / 'state' / db}?mode=ro", uri=True)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def dependency_layers(client: Client) -> dict[str, float]:
    """The client's dependency layers (install_dir/deps/<hash>) and when each was completed."""
    top = client.install_dir / "deps"
    return {p.name: (p / ".complete").stat().st_mtime_ns for p in top.iterdir()}


def project_only(venv: Path, layer: Path) -> None:
    """`venv` holds the project's own package and reaches its dependencies through `layer`."""
    (site,) = venv.glob("lib/python*/site-packages")
    assert (site / "mastercontrol").is_dir()
    assert not (site / "yaml").exists() and not (site / "fabric").exists()
    (deps,) = layer.glob("lib/python*/site-packages")
    assert (site / "mastercontrol-deps.pth").read_text().strip() == str(deps)
    assert (deps / "yaml").is_dir() and not (deps / "mastercontrol").exists()


def test_rollback_to_an_older_schema_runs_the_old_daemon_with_every_run_count_kept(
    fleet: Fleet, tmp_path: Path
) -> None:
    fleet.add_clients(1)
    marks = tmp_path / "once.runs"
    (fleet.project / "app" / "app_once.py").write_text(
        "def run(path: str) -> None:\n    with open(path, 'a') as f:\n        f.write('run\\n')\n"
    )
    (fleet.project / "configs" / "once.yaml").write_text(
        f"name: once\ntype: script\nmax_runs: 3\nmodule: app_once\nentry_point: run\n"
        f"params: {{path: {marks}}}\n"
    )
    assert fleet.fab("setup", "--accept-new-host-keys").returncode == 0
    (client,) = fleet.clients

    def runs() -> int:
        return marks.read_text().count("run\n") if marks.exists() else 0

    done = fleet.fab("deploy")  # release A: this checkout, schema LATEST_VERSION
    assert done.returncode == 0, done.stdout + done.stderr
    release_a = client.current()
    wait_code(client, "v1")
    wait_for(lambda: runs() == 3, 30, what="the n_times script's 3 runs")
    assert schema_version(client) == LATEST_VERSION
    layers = dependency_layers(client)
    assert len(layers) == 1

    newer = newer_schema_project(tmp_path / "newer", fleet.wheelhouse_cache)
    fleet.service("v2")
    done = fleet.fab("deploy", root=newer)  # release B: one more migration
    assert done.returncode == 0, done.stdout + done.stderr
    wait_code(client, "v2")
    assert schema_version(client) == LATEST_VERSION + 1  # B's daemon migrated the database
    # The safety net for a migration A could not use: the database as A left it, backed up.
    assert schema_version(client, f"backups/state.db.{release_a}") == LATEST_VERSION
    assert client.workload("once")["state"] == "COMPLETED"
    # Only the project's wheel changed: B's venv is new, its dependency layer is A's, untouched.
    release_b = client.current()
    assert release_a is not None and release_b is not None and release_b != release_a
    assert dependency_layers(client) == layers
    (layer,) = (client.install_dir / "deps" / name for name in layers)
    venv_a, venv_b = (client.install_dir / "releases" / r / "venv" for r in (release_a, release_b))
    assert venv_a.resolve() != venv_b.resolve()
    for venv in (venv_a, venv_b):
        project_only(venv.resolve(), layer)

    done = fleet.fab("rollback")
    assert done.returncode == 0, done.stdout + done.stderr
    assert client.current() == release_a
    wait_code(client, "v1")  # the old daemon started on the newer database and runs svc
    assert schema_version(client) == LATEST_VERSION + 1  # used as it is, never downgraded
    once = client.workload("once")
    assert once["state"] == "COMPLETED" and once["runs"] == 3, once
    assert runs() == 3  # no run lost, none repeated
