"""put_config and rollback_config against a real mastercontrold: a valid push starts the new
workload, an invalid one is rejected with file and line and leaves the config dir byte-identical,
rollback restores the previous set, and bad names or bodies are refused before any write."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from mastercontrol.errors import IPCError
from mastercontrol.ipc.client import MasterClient
from mastercontrol.ipc.protocol import MAX_REQUEST_BYTES, ErrorCode, encode_request
from tests.integration.harness import Daemon, pid_alive, wait_for


def yaml_of(name: str, func: str = "sleep_forever", **fields: object) -> str:
    body: dict[str, object] = {"name": name, "type": "service"}
    body["module"] = "tests.integration.workloads"
    body.update({"entry_point": func, **fields})
    return json.dumps(body, indent=2) + "\n"  # JSON is valid YAML


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file of a directory (names and bytes): to prove nothing changed."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def client_of(daemon: Daemon) -> MasterClient:
    return MasterClient(daemon.socket_path, timeout=30)


def test_a_valid_push_starts_the_new_workload_and_keeps_the_old_set(daemon: Daemon) -> None:
    daemon.workload("keep", "sleep_forever")
    daemon.start()
    client = client_of(daemon)
    keep_pid = daemon.wait_state("keep", "RUNNING")["pid"]
    before = snapshot(daemon.config_dir)

    result = client.put_config({"web.yaml": yaml_of("web", tags=["new"])})

    assert result["plan"]["add"] == ["web"] and result["plan"]["unchanged"] == ["keep"]
    assert result["written"] == ["web.yaml"] and result["removed"] == []
    daemon.wait_state("web", "RUNNING")
    assert daemon.status("keep")["pid"] == keep_pid  # unchanged: not touched
    previous = daemon.db_path.parent / "config-previous"
    assert snapshot(previous) == before  # the set before the push, outside the config dir
    assert (daemon.config_dir / "web.yaml").read_text() == yaml_of("web", tags=["new"])
    assert not [p for p in daemon.config_dir.iterdir() if p.name.startswith(".")]  # no temp


def test_an_invalid_push_is_rejected_with_file_and_line_and_changes_nothing(
    daemon: Daemon,
) -> None:
    daemon.workload("keep", "sleep_forever")
    daemon.start()
    client = client_of(daemon)
    keep_pid = daemon.wait_state("keep", "RUNNING")["pid"]
    before = snapshot(daemon.config_dir)
    broken = yaml_of("web").replace('"type": "service"', '"type": "servce"')
    clash = yaml_of("keep")  # valid alone, but its name is taken by keep.yaml

    with pytest.raises(IPCError) as info:
        client.put_config({"web.yaml": broken, "zz.yaml": clash}, replace=False)

    assert info.value.code is ErrorCode.INVALID_CONFIG
    assert isinstance(info.value.details, dict)
    problems = info.value.details["problems"]
    by_file = {p["file"]: p for p in problems}
    assert set(by_file) == {"web.yaml", "zz.yaml"}, problems
    assert by_file["web.yaml"]["line"] == 3 and by_file["web.yaml"]["field"] == "type"
    assert "duplicate workload name 'keep'" in by_file["zz.yaml"]["message"]
    assert "web.yaml:3: type:" in str(info.value)
    assert "config-staging" not in str(info.value)  # names as the client gave them
    assert snapshot(daemon.config_dir) == before
    assert not (daemon.db_path.parent / "config-previous").exists()
    assert not (daemon.db_path.parent / "config-staging").exists()
    assert daemon.status("keep")["pid"] == keep_pid and pid_alive(keep_pid)


def test_replace_then_rollback_restores_the_previous_set(daemon: Daemon) -> None:
    daemon.workload("old", "sleep_forever")
    daemon.workload("edited", "sleep_forever")
    daemon.start()
    client = client_of(daemon)
    daemon.wait_state("old", "RUNNING")
    edited_pid = daemon.wait_state("edited", "RUNNING")["pid"]
    before = snapshot(daemon.config_dir)

    result = client.put_config(
        {"edited.yaml": yaml_of("edited", tags=["v2"]), "fresh.yaml": yaml_of("fresh")},
        replace=True,
    )
    assert result["removed"] == ["old.yaml"]
    assert result["plan"] == {
        "add": ["fresh"],
        "remove": ["old"],
        "change": ["edited"],
        "unchanged": [],
    }
    assert sorted(snapshot(daemon.config_dir)) == ["edited.yaml", "fresh.yaml"]
    daemon.wait_state("fresh", "RUNNING")
    wait_for(lambda: "old" not in daemon.workloads(), what="old removed")

    rolled = client.rollback_config()

    assert rolled["plan"]["add"] == ["old"] and rolled["plan"]["remove"] == ["fresh"]
    assert rolled["plan"]["change"] == ["edited"]
    assert snapshot(daemon.config_dir) == before
    daemon.wait_state("old", "RUNNING")
    wait_for(lambda: "fresh" not in daemon.workloads(), what="fresh removed")
    st = daemon.wait_state("edited", "RUNNING")
    assert st["tags"] == [] and st["pid"] != edited_pid


def test_rollback_without_a_saved_set_is_an_error(daemon: Daemon) -> None:
    daemon.start()
    with pytest.raises(IPCError) as info:
        client_of(daemon).rollback_config()
    assert info.value.code is ErrorCode.NO_PREVIOUS_CONFIG


@pytest.mark.parametrize(
    "files",
    [
        {"../escape.yaml": "x"},
        {"sub/dir.yaml": "x"},
        {".hidden.yaml": "x"},
        {"daemon.yaml": "fleet: {}"},
        {"inventory.yaml": "clients: []"},
        {"notes.txt": "x"},
        {"nul\x00.yaml": "x"},
        {"ok.yaml": 42},
        {"ok.yaml": "\ud800"},
        ["ok.yaml"],
    ],
)
def test_bad_names_and_bodies_are_refused_before_any_write(daemon: Daemon, files: object) -> None:
    daemon.start()
    before = snapshot(daemon.config_dir)
    with pytest.raises(IPCError) as info:
        client_of(daemon).call("put_config", files=files)
    assert info.value.code is ErrorCode.BAD_REQUEST, info.value
    assert snapshot(daemon.config_dir) == before
    assert not (daemon.root / "escape.yaml").exists()
    assert "Traceback" not in daemon.stderr()


def test_a_push_over_the_request_cap_is_too_large(daemon: Daemon) -> None:
    daemon.start()
    before = snapshot(daemon.config_dir)
    # Just over the cap: the line ends in the very chunk that crosses it.
    text = yaml_of("big") + "#" * (MAX_REQUEST_BYTES - 100) + "\n"
    line = encode_request("put_config", {"files": {"big.yaml": text}})
    assert MAX_REQUEST_BYTES < len(line) < MAX_REQUEST_BYTES + 1000
    with pytest.raises(IPCError) as info:
        client_of(daemon).put_config({"big.yaml": text})  # the client refuses to send it
    assert info.value.code is ErrorCode.TOO_LARGE
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(daemon.socket_path))
        try:
            s.sendall(line)
            reply = s.makefile("rb").readline()
        except (BrokenPipeError, ConnectionResetError):
            reply = b""  # the daemon may close before the whole line is written
    assert reply == b"" or json.loads(reply)["error"]["code"] == "too_large", reply[:200]
    assert snapshot(daemon.config_dir) == before
    assert client_of(daemon).ping()["pid"] == daemon.pid
