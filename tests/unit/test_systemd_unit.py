"""The shipped systemd unit and hardening drop-in: valid for systemd, and the choices we rely on."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mastercontrol.config.model import DaemonSettings

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "systemd"
UNIT = CONTRIB / "mastercontrold.service"
DROP_IN = CONTRIB / "mastercontrold-hardening.conf"
BIN_DIR = Path(sys.executable).parent  # the venv's bin: console scripts live next to python

# Settings that hide or allow-list devices: GPIO, I2C, SPI and serial workloads need /dev.
DEVICE_HIDING = ("PrivateDevices", "DevicePolicy", "DeviceAllow", "ProtectClock")


def directives(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) of every setting, in file order; comments skipped."""
    section = ""
    found: list[tuple[str, str, str]] = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a setting: {raw!r}"
        found.append((section, key.strip(), value.strip()))
    return found


def settings(path: Path, section: str = "Service") -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for sect, key, value in directives(path):
        if sect == section:
            result.setdefault(key, []).append(value)
    return result


def seconds(timespan: str) -> float:
    """The few systemd time span forms the unit uses: "90", "90s", "10min"."""
    match = re.fullmatch(r"(\d+)\s*(s|sec|min|)", timespan)
    assert match, f"unexpected time span {timespan!r}"
    return int(match[1]) * (60 if match[2] == "min" else 1)


def console_script(name: str) -> Path:
    path = BIN_DIR / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: install the package first (pip install -e .)")
    return path


def run_verify(unit: Path) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        # A skip, as README promises a normal user; MCTL_REQUIRE_ALL=1 (CI) makes it a failure.
        pytest.skip("systemd-analyze not found: install the Debian package 'systemd'")
    env = {
        **os.environ,
        # Pin where and what systemd logs, whatever the caller's environment says: every
        # warning and error to stderr (not to a journal when run under a service), no colours.
        "SYSTEMD_LOG_LEVEL": "info",
        "SYSTEMD_LOG_TARGET": "console",
        "SYSTEMD_LOG_COLOR": "0",
        "SYSTEMD_LOG_LOCATION": "0",
    }
    # --man=no: Documentation= names man pages that exist only once the package's man pages
    # are installed on the target; verify would otherwise run man(1) for each and complain.
    return subprocess.run(
        [analyze, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def installable_copy(tmp_path: Path, with_drop_in: bool) -> Path:
    """The unit as an operator installs it: ExecStart=/ExecReload= pointing at this venv."""
    daemon = console_script("mastercontrold")
    ctl = console_script("mastercontrol-ctl")
    text = UNIT.read_text()
    text, n_start = re.subn(r"(?m)^ExecStart=\S+", f"ExecStart={daemon}", text)
    text, n_reload = re.subn(r"(?m)^ExecReload=\S+", f"ExecReload={ctl}", text)
    assert (n_start, n_reload) == (1, 1)
    unit = tmp_path / UNIT.name
    unit.write_text(text)
    if with_drop_in:
        drop_in_dir = tmp_path / f"{UNIT.name}.d"
        drop_in_dir.mkdir()
        shutil.copy(DROP_IN, drop_in_dir / "hardening.conf")
    return unit


@pytest.mark.parametrize("with_drop_in", [False, True], ids=["unit", "unit+hardening"])
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path, with_drop_in: bool) -> None:
    result = run_verify(installable_copy(tmp_path, with_drop_in))
    assert (result.returncode, result.stderr, result.stdout) == (0, "", "")


def test_verify_reports_problems_in_the_drop_in(tmp_path: Path) -> None:
    # Guards the test above: the drop-in next to the copy is really read and its warnings
    # really reach stderr.
    unit = installable_copy(tmp_path, with_drop_in=True)
    with (tmp_path / f"{UNIT.name}.d" / "hardening.conf").open("a") as f:
        f.write("NoSuchSetting=yes\n")
    result = run_verify(unit)
    assert "NoSuchSetting" in result.stderr


def test_verify_reports_a_missing_executable(tmp_path: Path) -> None:
    unit = installable_copy(tmp_path, with_drop_in=False)
    missing = tmp_path / "no-such-mastercontrold"
    unit.write_text(re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={missing}", unit.read_text()))
    result = run_verify(unit)
    assert result.returncode != 0
    assert str(missing) in result.stderr


def test_unit_is_notify_type_and_only_the_master_may_notify() -> None:
    service = settings(UNIT)
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]


def test_unit_sends_sigterm_to_the_master_only() -> None:
    # mixed: the master stops its workloads in order; SIGKILL for the leftovers afterwards.
    service = settings(UNIT)
    assert service["KillMode"] == ["mixed"]
    assert service["KillSignal"] == ["SIGTERM"]


def test_unit_waits_longer_than_the_daemon_takes_to_stop_its_workloads() -> None:
    stop_timeout = seconds(settings(UNIT)["TimeoutStopSec"][0])
    assert stop_timeout > DaemonSettings().shutdown_timeout


def test_unit_documents_the_shipped_command_paths() -> None:
    service = settings(UNIT)
    assert service["ExecStart"] == ["/usr/local/bin/mastercontrold"]
    assert service["ExecReload"] == ["/usr/local/bin/mastercontrol-ctl reload"]


def test_unit_lets_systemd_create_the_daemon_directories() -> None:
    service = settings(UNIT)
    for key in (
        "StateDirectory",
        "RuntimeDirectory",
        "LogsDirectory",
        "ConfigurationDirectory",
    ):
        assert service[key] == ["mastercontrol"], key
    # A stale socket or pid file from a dead daemon must not survive it.
    assert "RuntimeDirectoryPreserve" not in service


def test_unit_arms_the_watchdog_and_restarts_on_failure_but_not_on_bad_config() -> None:
    service = settings(UNIT)
    assert seconds(service["WatchdogSec"][0]) == 60
    assert service["Restart"] == ["on-failure"]
    assert service["RestartPreventExitStatus"] == ["78"]  # EX_CONFIG


@pytest.mark.parametrize("path", [UNIT, DROP_IN], ids=lambda p: p.name)
def test_no_setting_hides_devices_from_workloads(path: Path) -> None:
    keys = {key for _, key, _ in directives(path)}
    assert not keys & set(DEVICE_HIDING)


@pytest.mark.parametrize("path", [UNIT, DROP_IN], ids=lambda p: p.name)
def test_negative_nice_stays_possible(path: Path) -> None:
    # CapabilityBoundingSet= without CAP_SYS_NICE, or a non-root User= without it as an
    # ambient capability, would make a negative cpu_nice fail in every workload.
    found = {key: value for _, key, value in directives(path)}
    if "CapabilityBoundingSet" in found:
        assert "CAP_SYS_NICE" in found["CapabilityBoundingSet"]
    if "User" in found:
        assert "CAP_SYS_NICE" in found.get("AmbientCapabilities", "")


def test_drop_in_has_only_service_settings() -> None:
    sections = {section for section, _, _ in directives(DROP_IN)}
    assert sections == {"Service"}
    keys = {key for _, key, _ in directives(DROP_IN)}
    assert {"ProtectSystem", "NoNewPrivileges", "PrivateTmp"} <= keys


def _pip_installed_venv(tmp_path: Path) -> Path:
    """A fresh venv with mastercontrol installed the way an operator does it: a wheel, by pip,
    not editable. Runtime dependencies come from the test venv through a .pth line (that adds
    only the directory, so the test venv's editable mastercontrol stays out of the way)."""
    repo = Path(__file__).resolve().parents[2]
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "var", "build", "*.egg-info", "__pycache__", ".*_cache", "artifacts"
    )
    shutil.copytree(repo, src, ignore=ignore)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(wheels),
            str(src),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    venv = tmp_path / "opt" / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    vpy = venv / "bin" / "python"
    subprocess.run(
        [
            str(vpy),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            *map(str, wheels.glob("*.whl")),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    site = subprocess.run(
        [str(vpy), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    deps = [p for p in map(Path, sys.path) if p.name == "site-packages" and p.is_dir()]
    Path(site, "test-deps.pth").write_text("".join(f"{p}\n" for p in deps))
    return venv


def test_the_unit_as_installed_by_pip_verifies(tmp_path: Path) -> None:
    # The shipped unit names /usr/local/bin, which a venv install does not have; the operator
    # installs the unit with `mastercontrol-ctl systemd-unit --install`, which points it at
    # the venv's own programs, and systemd must accept exactly that file.
    venv = _pip_installed_venv(tmp_path)
    units = tmp_path / "etc-systemd-system"
    done = subprocess.run(
        [str(venv / "bin" / "mastercontrol-ctl"), "systemd-unit", "--install", str(units)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    unit = units / UNIT.name
    service = settings(unit)
    assert service["ExecStart"] == [str(venv / "bin" / "mastercontrold")]
    assert service["ExecReload"] == [f"{venv / 'bin' / 'mastercontrol-ctl'} reload"]
    assert (units / f"{UNIT.name}.d" / "hardening.conf").read_text() == DROP_IN.read_text()
    result = run_verify(unit)
    assert (result.returncode, result.stderr, result.stdout) == (0, "", "")


def test_systemd_unit_refuses_an_installation_without_its_programs(tmp_path: Path) -> None:
    from mastercontrol.ctl import systemd_unit

    with pytest.raises(systemd_unit.UnitError, match="is not an executable"):
        systemd_unit.render(tmp_path)
