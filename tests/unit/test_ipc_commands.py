"""The master's command table, the protocol's COMMANDS and the MasterClient façade agree, and
every error the master raises carries an ErrorCode. Reflective: adding a command, a handler or
a façade method without the others fails here."""

from __future__ import annotations

import ast
import inspect
import typing
from pathlib import Path
from typing import Any

import pytest

from mastercontrol.daemon.commands import Commands
from mastercontrol.ipc.client import MasterClient
from mastercontrol.ipc.protocol import COMMANDS, ErrorCode

PACKAGE = Path(__file__).resolve().parents[2] / "mastercontrol"
SAMPLE_ARGS = {str: "x", bool: False, int: 1, dict: {}}


def recorder(cls: type[MasterClient]) -> Any:
    """An instance of `cls` whose transport only notes which command each method sends."""

    class Recorder(cls):  # type: ignore[valid-type,misc]
        def __init__(self) -> None:
            super().__init__(Path("/nonexistent"))
            self.sent: list[str] = []

        def call(self, cmd: str, **args: Any) -> Any:
            self.sent.append(cmd)
            return {}

    return Recorder()


def facade_methods(cls: type[MasterClient]) -> list[str]:
    return [
        name
        for name, _ in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_") and name != "call"
    ]


def command_sent_by(cls: type[MasterClient], method: str) -> str:
    """Call one façade method with sample arguments; the command it put on the wire."""
    client = recorder(cls)
    fn = getattr(client, method)
    hints = typing.get_type_hints(getattr(cls, method))
    kwargs = {}
    for param in inspect.signature(fn).parameters.values():
        if param.default is inspect.Parameter.empty:
            hint = hints[param.name]
            kwargs[param.name] = SAMPLE_ARGS[typing.get_origin(hint) or hint]
    fn(**kwargs)
    assert len(client.sent) == 1, f"{method} sent {client.sent}"
    return str(client.sent[0])


def commands_of_the_facade(cls: type[MasterClient]) -> list[str]:
    return sorted(command_sent_by(cls, method) for method in facade_methods(cls))


def test_the_master_dispatches_exactly_the_protocol_commands() -> None:
    handlers = {n[4:] for n, _ in inspect.getmembers(Commands) if n.startswith("cmd_")}
    assert set(Commands.TABLE) == set(COMMANDS)
    assert handlers == set(COMMANDS)
    assert len(set(COMMANDS)) == len(COMMANDS)


def test_every_command_has_exactly_one_facade_method_and_vice_versa() -> None:
    assert commands_of_the_facade(MasterClient) == sorted(COMMANDS)


def test_the_facade_check_can_fail() -> None:
    # A second method for one command, or one missing, makes the lists differ.
    class Twice(MasterClient):
        def halt(self) -> dict[str, Any]:
            return self._dict("down")

    assert commands_of_the_facade(Twice) != sorted(COMMANDS)
    assert command_sent_by(MasterClient, "workloads") == "list"
    assert command_sent_by(MasterClient, "status") == "status"


def ipc_error_codes(path: Path) -> list[tuple[int, str]]:
    """(line, source of the code argument) of every IPCError(...) call in a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "IPCError"
            and node.args
        ):
            found.append((node.lineno, ast.unparse(node.args[0])))
    return found


MASTER_MODULES = sorted(
    p for part in ("daemon", "config", "engine") for p in (PACKAGE / part).rglob("*.py")
)


@pytest.mark.parametrize("path", MASTER_MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_error_the_master_sends_is_an_error_code(path: Path) -> None:
    members = {f"ErrorCode.{m.name}" for m in ErrorCode}
    bad = [(line, src) for line, src in ipc_error_codes(path) if src not in members]
    assert bad == []


def test_the_error_code_scan_finds_calls() -> None:
    found = ipc_error_codes(PACKAGE / "daemon" / "supervisor.py")
    assert "ErrorCode.UNKNOWN_WORKLOAD" in {src for _, src in found}, found
