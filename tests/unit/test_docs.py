"""The Markdown docs: links lead somewhere, and the commands and codes they cite exist.

Checks README.md and docs/*.md against the files of the checkout, the argparse parser of
mastercontrol-ctl and the daemon's IPC command table. Pure file reading; no daemon.
"""

from __future__ import annotations

import argparse
import configparser
import re
import shlex
from pathlib import Path

import pytest

from mastercontrol.ctl.main import build_parser
from mastercontrol.daemon.commands import Commands
from mastercontrol.ipc.protocol import ErrorCode

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
_SPAN = re.compile(r"`([^`\n]+)`")
# mastercontrol-ctl where a command starts: line start, after a pipe, `;`, `&&`, `$(`, `sudo`
# or `Exec...=`, possibly with a directory in front (`.venv/bin/mastercontrol-ctl`).
_CTL = re.compile(
    r"(?:^[\s$]*|[|;&(=]\s*|\bsudo\s+)(?:[\w./-]*/)?mastercontrol-ctl(?=\s|$)", re.MULTILINE
)


def _anchors(doc: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    text = _FENCE.sub("", doc.read_text(encoding="utf-8"))
    headings = re.findall(r"^#+\s+(.+?)\s*$", text, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def _code(text: str) -> list[str]:
    """Fenced blocks (continuation lines joined) and inline code spans: where commands are."""
    blocks = [m.group(1).replace("\\\n", " ") for m in _FENCE.finditer(text)]
    prose = _FENCE.sub("", text)
    return blocks + [m.group(1) for m in _SPAN.finditer(prose)]


def _ctl_invocations(code: str) -> list[list[str]]:
    """The words after each `mastercontrol-ctl`, up to the end of its line or pipe."""
    found = []
    for line in code.splitlines():
        for match in _CTL.finditer(line):
            rest = re.split(r"[|;&#]", line[match.end() :], maxsplit=1)[0]
            try:
                found.append(shlex.split(rest))
            except ValueError:
                found.append(rest.split())
    return found


def _global_options_with_values(parser: argparse.ArgumentParser) -> set[str]:
    return {
        opt
        for action in parser._actions
        if action.option_strings and action.nargs != 0
        for opt in action.option_strings
    }


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("mastercontrol-ctl has no subcommands")


def test_there_are_docs_to_check() -> None:
    names = {p.name for p in DOCS}
    assert {"README.md", "usage.md", "architecture.md", "operations.md"} <= names


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_points_to_an_existing_file(doc: Path) -> None:
    text = _FENCE.sub("", doc.read_text(encoding="utf-8"))
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http:, mailto: ... and anchors within the page
        path, _, anchor = target.partition("#")
        file = doc.parent / path
        missing_anchor = (
            file.is_file()
            and file.suffix == ".md"
            and bool(anchor)
            and anchor not in _anchors(file)
        )
        if not file.exists() or missing_anchor:
            broken.append(target)
    assert broken == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_mastercontrol_ctl_command_in_the_docs_exists(doc: Path) -> None:
    parser = build_parser()
    commands = _subcommands(parser)
    takes_value = _global_options_with_values(parser)
    bad = []
    for code in _code(doc.read_text(encoding="utf-8")):
        for words in _ctl_invocations(code):
            i = 0
            while i < len(words) and words[i].startswith("-"):
                i += 2 if words[i] in takes_value and "=" not in words[i] else 1
            if i >= len(words) or words[i] in ("--help", "-h", "--version"):
                continue
            if words[i] not in commands:
                bad.append(" ".join(words))
                continue
            known = {o for a in commands[words[i]]._actions for o in a.option_strings}
            bad += [
                f"{words[i]} {w}" for w in words[i + 1 :] if w.startswith("-") and w not in known
            ]
    assert bad == []


def test_every_ipc_command_is_in_the_architecture_doc() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## IPC protocol", 1)[1]
    missing = [cmd for cmd in Commands.TABLE if f"`{cmd}`" not in section]
    assert missing == []


def test_every_ipc_error_code_is_in_the_architecture_doc() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## IPC protocol", 1)[1]
    assert len(ErrorCode) >= 10
    assert sorted(c.value for c in ErrorCode if f"`{c.value}`" not in section) == []


def test_setup_cfg_installs_each_man_page_in_its_section() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    installed = {
        key: value.split()
        for key, value in cfg["options.data_files"].items()
        if key.startswith("share/man/")
    }
    pages = sorted((ROOT / "man").glob("*.[1-8]"))
    assert len(pages) == 4  # ctl (1), yaml (5), deploy (7), daemon (8)
    assert installed == {f"share/man/man{p.suffix[1:]}": [f"man/{p.name}"] for p in pages}
