"""Token files (config.secrets): resolved stripped, refused when exposed, never echoed; the
warnings `validate` prints for exposed tokens; and the token rules of daemon.yaml."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mastercontrol.config.load import load_daemon_config, load_inventory
from mastercontrol.config.model import DaemonConfig, FleetSettings
from mastercontrol.config.secrets import SecretError, resolve_token, token_warnings
from mastercontrol.ctl.main import main as ctl_main

SECRET = "s3cr3t-token-value"


def token_file(tmp_path: Path, text: str = f"  {SECRET}\n", mode: int = 0o600) -> Path:
    path = tmp_path / "token"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_the_inline_token_or_none() -> None:
    assert resolve_token("abc", None) == "abc"
    assert resolve_token(None, None) is None
    assert resolve_token("", "") is None


def test_a_token_file_is_read_and_stripped(tmp_path: Path) -> None:
    assert resolve_token(None, token_file(tmp_path)) == SECRET
    assert resolve_token(None, str(token_file(tmp_path, mode=0o640))) == SECRET


@pytest.mark.parametrize(
    ("text", "mode", "expected"),
    [
        (SECRET, 0o644, "readable by every user (mode 0644)"),
        (SECRET, 0o604, "readable by every user"),
        ("  \n\n", 0o600, "is empty"),
        ("x" * 5000, 0o600, "larger than 4096 bytes"),
    ],
)
def test_bad_token_files_are_refused_without_quoting_them(
    tmp_path: Path, text: str, mode: int, expected: str
) -> None:
    with pytest.raises(SecretError) as info:
        resolve_token(None, token_file(tmp_path, text, mode))
    assert expected in str(info.value)
    assert SECRET not in str(info.value)


def test_a_missing_file_a_directory_a_symlink_and_both_settings_are_refused(
    tmp_path: Path,
) -> None:
    with pytest.raises(SecretError, match="cannot open token file"):
        resolve_token(None, tmp_path / "nope")
    with pytest.raises(SecretError, match="not a regular file"):
        resolve_token(None, tmp_path)
    link = tmp_path / "link"
    link.symlink_to(token_file(tmp_path))
    with pytest.raises(SecretError, match="cannot open token file"):
        resolve_token(None, link)  # a planted link could point at any file the daemon reads
    with pytest.raises(SecretError, match="not both"):
        resolve_token("abc", token_file(tmp_path))


def test_an_inline_token_in_a_world_readable_daemon_yaml_is_warned_about(tmp_path: Path) -> None:
    daemon_yaml = tmp_path / "daemon.yaml"
    daemon_yaml.write_text("fleet:\n  api_token: abc\n")
    config = DaemonConfig(fleet=FleetSettings(api_token=SECRET))
    daemon_yaml.chmod(0o644)
    (warning,) = token_warnings(config, daemon_yaml)
    assert warning.startswith(f"{daemon_yaml}: warning: holds fleet.api_token")
    assert SECRET not in warning
    daemon_yaml.chmod(0o600)
    assert token_warnings(config, daemon_yaml) == []
    assert token_warnings(DaemonConfig(), daemon_yaml) == []


def test_an_unusable_token_file_of_an_enabled_section_is_warned_about(tmp_path: Path) -> None:
    path = token_file(tmp_path, mode=0o644)
    config = DaemonConfig(fleet=FleetSettings(enabled=True, api_token_file=str(path)))
    (warning,) = token_warnings(config, tmp_path / "daemon.yaml")
    assert "fleet.api_token_file: token file" in warning and "readable by every user" in warning
    os.chmod(path, 0o600)
    assert token_warnings(config, tmp_path / "daemon.yaml") == []


def test_daemon_yaml_token_rules_are_located(tmp_path: Path) -> None:
    path = tmp_path / "daemon.yaml"
    path.write_text(
        "fleet:\n  enabled: true\n  central_api_url: http://c:8080\n  api_token: a\n"
        "  api_token_file: /etc/mastercontrol/token\n"
        "central:\n  api_token_file: ''\n"
    )
    _, problems = load_daemon_config(path)
    assert problems == [
        f"{path}:5: fleet.api_token_file: give api_token or api_token_file, not both",
        f"{path}:7: central.api_token_file: must not be empty",
    ]


def test_a_relative_token_file_is_taken_from_the_naming_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config dir carries its token files with it, whatever the daemon's working directory."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "daemon.yaml").write_text(
        "fleet:\n  enabled: true\n  central_api_url: http://c:8080\n"
        "  api_token_file: ../var/device.token\n"
        "central:\n  enabled: true\n  api_token_file: central.token\n"
    )
    (conf / "inventory.yaml").write_text(
        "defaults:\n  api_token_file: tokens/shared.token\n"
        "clients:\n  - name: a\n    host: 127.0.0.1\n"
        "  - name: b\n    host: 127.0.0.1\n    api_token_file: /etc/b.token\n"
    )
    monkeypatch.chdir("/")
    config, problems = load_daemon_config(conf / "daemon.yaml")
    assert problems == []
    assert config.fleet.api_token_file == str(tmp_path / "var" / "device.token")
    assert config.central.api_token_file == str(conf / "central.token")
    inventory, problems = load_inventory(conf / "inventory.yaml")
    assert problems == []
    assert [c.api_token_file for c in inventory.clients] == [
        str(conf / "tokens" / "shared.token"),
        "/etc/b.token",
    ]


def test_a_token_file_satisfies_a_non_loopback_listener(tmp_path: Path) -> None:
    path = tmp_path / "daemon.yaml"
    path.write_text(
        "fleet:\n  enabled: true\n  central_api_url: http://c:8080\n  api_host: 0.0.0.0\n"
        "  api_token_file: /etc/mastercontrol/token\n"
    )
    config, problems = load_daemon_config(path)
    assert problems == []
    assert config.fleet.api_token_file == "/etc/mastercontrol/token"


def test_api_url_is_derived_unless_given(tmp_path: Path) -> None:
    assert FleetSettings().api_url == "http://127.0.0.1:9100"
    assert FleetSettings(api_host="::1", api_port=9200).api_url == "http://[::1]:9200"
    assert FleetSettings(api_host="0.0.0.0").api_url == f"http://{os.uname().nodename}:9100"
    path = tmp_path / "daemon.yaml"
    path.write_text("fleet:\n  api_url: https://pi-7.example:9100/\n")
    assert load_daemon_config(path)[0].fleet.api_url == "https://pi-7.example:9100"


def test_validate_prints_the_warning_and_still_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    daemon_yaml = conf / "daemon.yaml"
    daemon_yaml.write_text(f"fleet:\n  api_token: {SECRET}\n")
    daemon_yaml.chmod(0o644)
    code = ctl_main(["--config-dir", str(conf), "validate"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"{daemon_yaml}: warning: holds fleet.api_token" in out
    assert SECRET not in out


def test_validate_warns_about_inventory_clients_that_share_the_operators_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    own = token_file(tmp_path)
    loose = tmp_path / "loose-token"
    loose.write_text("x\n")
    loose.chmod(0o644)
    (conf / "daemon.yaml").write_text(f"central:\n  enabled: true\n  api_token_file: {own}\n")
    (conf / "inventory.yaml").write_text(
        "clients:\n"
        "  - {name: shared-1, host: 10.0.0.1}\n"
        "  - {name: shared-2, host: 10.0.0.2}\n"
        f"  - {{name: own, host: 10.0.0.3, api_token_file: {own}}}\n"
        f"  - {{name: broken, host: 10.0.0.4, api_token_file: {loose}}}\n"
        "  - {name: inline, host: 10.0.0.5, api_token: t-inline}\n"
    )
    code = ctl_main(["--config-dir", str(conf), "validate"])
    out = capsys.readouterr().out
    assert code == 0, out  # warnings, not problems
    inventory = conf / "inventory.yaml"
    (shared,) = [line for line in out.splitlines() if "without a token of their own" in line]
    assert shared.startswith(f"{inventory}: warning: 2 client(s)")
    assert "(shared-1, shared-2)" in shared and "holds the operator's token" in shared
    assert f"{inventory}: warning: client broken: token file" in out
    assert ", own" not in shared and "inline" not in out and SECRET not in out
    # Without central enabled the inventory is for deploys only: nothing to warn about.
    (conf / "daemon.yaml").write_text("central:\n  enabled: false\n")
    ctl_main(["--config-dir", str(conf), "validate"])
    assert "without a token" not in capsys.readouterr().out


def test_a_clients_own_token_replaces_the_defaults_token_file(tmp_path: Path) -> None:
    """defaults.api_token_file plus a client's api_token is that client's token, not both."""
    (tmp_path / "inventory.yaml").write_text(
        "defaults:\n  api_token_file: /etc/shared.token\n"
        "clients:\n  - name: a\n    host: 127.0.0.1\n    api_token: own-token\n"
        "  - name: b\n    host: 127.0.0.1\n"
    )
    inventory, problems = load_inventory(tmp_path / "inventory.yaml")
    assert problems == []
    a, b = inventory.clients
    assert (a.api_token, a.api_token_file) == ("own-token", None)
    assert resolve_token(a.api_token, a.api_token_file) == "own-token"
    assert (b.api_token, b.api_token_file) == (None, "/etc/shared.token")
