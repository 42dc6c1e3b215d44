"""The man pages: lint-clean, renderable, and in step with the code they describe.

mastercontrol.yaml(5) holds field lists generated from the tables of
mastercontrol/config/schema.py between `.\\" BEGIN GENERATED <table>` and `.\\" END GENERATED`;
`python -m tests.unit.test_man_pages` rewrites them. The ctl and daemon pages are checked against
their argparse parsers. Needs mandoc and man (Debian packages mandoc, man-db): a missing tool is
a failure, not a skip.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mastercontrol import errors
from mastercontrol.config import checks, schema
from mastercontrol.config.schema import Setting
from mastercontrol.ctl.main import build_parser as ctl_parser
from mastercontrol.daemon.main import build_parser as daemon_parser

ROOT = Path(__file__).resolve().parents[2]
MAN = ROOT / "man"
DAEMON_PAGE = MAN / "mastercontrold.8"
CTL_PAGE = MAN / "mastercontrol-ctl.1"
CONFIG_PAGE = MAN / "mastercontrol.yaml.5"
DEPLOY_PAGE = MAN / "mastercontrol-deploy.7"
PAGES = (DAEMON_PAGE, CTL_PAGE, CONFIG_PAGE, DEPLOY_PAGE)

# Generated regions of mastercontrol.yaml.5: marker name -> (table, prefix of field names).
GENERATED: dict[str, tuple[tuple[Setting, ...], str]] = {
    "workload": (schema.WORKLOAD, ""),
    "health_check": (schema.HEALTH_CHECK, "health_check."),
    "daemon": (schema.DAEMON, "daemon."),
    "fleet": (schema.FLEET, "fleet."),
    "central": (schema.CENTRAL, "central."),
    "inventory": (schema.INVENTORY_CLIENT, ""),
    "inventory_fleet": (schema.INVENTORY_FLEET, "defaults."),
    "deploy": (schema.INVENTORY_DEPLOY, "deploy."),
}
_REGION = re.compile(
    r'^\.\\" BEGIN GENERATED (?P<name>\w+)\n(?P<body>.*?)^\.\\" END GENERATED\n',
    re.MULTILINE | re.DOTALL,
)
# A field entry: `.TP` then `\fBname\fR (type; default: ...)`.
_FIELD_HEAD = re.compile(r"^\.TP\n\\fB(?P<name>[A-Za-z_.]+)\\fR \(", re.MULTILINE)


# --- generating the field lists ----------------------------------------------------------------


def _escape(text: str) -> str:
    """Text for a roff text line: backslashes escaped, no line read as a request."""
    text = text.replace("\\", "\\e")
    return "\\&" + text if text.startswith((".", "'")) else text


def _man_default(setting: Setting) -> str:
    if setting.required:
        return "required"
    if setting.doc_default is not None:
        return f"default: {setting.doc_default}"
    value: Any = setting.default
    if value is None:
        shown = "none"
    elif isinstance(value, bool):
        shown = str(value).lower()
    elif isinstance(value, tuple | list):
        shown = "[]"
    elif isinstance(value, dict):
        shown = "{}"
    elif isinstance(value, float):
        shown = f"{value:g}"
    else:
        shown = str(value)
    return f"default: {shown}"


def field_lines(table: tuple[Setting, ...], prefix: str) -> list[str]:
    """The roff lines documenting every setting of `table`."""
    lines: list[str] = []
    for s in table:
        kind = "mapping" if s.type is checks.SECTION else s.type.name
        lines += [".TP", f"\\fB{prefix}{s.name}\\fR ({kind}; {_man_default(s)})", _escape(s.help)]
    return lines


def render_page(text: str) -> str:
    """`text` with every generated region rewritten from the schema tables."""

    def fill(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in GENERATED:
            raise KeyError(f"unknown generated region {name!r} in {CONFIG_PAGE.name}")
        table, prefix = GENERATED[name]
        body = "\n".join(field_lines(table, prefix))
        return f'.\\" BEGIN GENERATED {name}\n{body}\n.\\" END GENERATED\n'

    return _REGION.sub(fill, text)


# --- reading the pages -------------------------------------------------------------------------


def _plain(line: str) -> str:
    """A source line as readable text: no leading macro, quotes, font or character escapes."""
    if line.startswith("."):
        line = line.split(None, 1)[1] if " " in line else ""
        line = line.replace('"', "")
    for esc, char in (("\\-", "-"), ("\\(aq", "'"), ("\\(dq", '"'), ("\\(bu", "*"), ("\\&", "")):
        line = line.replace(esc, char)
    line = re.sub(r"\\f[BIRP]", "", line)
    return line.replace("\\e", "\\")


def _sections(path: Path) -> dict[str, list[str]]:
    """Source lines of each `.SH` section."""
    out: dict[str, list[str]] = {}
    current = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(".SH "):
            current = line[4:].strip().strip('"')
            out[current] = []
        elif current:
            out[current].append(line)
    return out


def _items(lines: list[str]) -> dict[str, str]:
    """Each `.TP` item of a section: first word of its head -> plain text of head and body."""
    items: dict[str, str] = {}
    key: str | None = None
    for line in lines:
        if line == ".TP":
            key = ""
            continue
        if key == "":
            text = _plain(line)
            key = text.split()[0] if text.split() else ""
            items[key] = text
        elif key and not line.startswith((".SS", ".PP")):
            items[key] += " " + _plain(line)
        else:
            key = None
    return items


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the parser has no subcommands")


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [
        opt
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction)
        for opt in action.option_strings
    ]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        # A skip, as README promises a normal user; MCTL_REQUIRE_ALL=1 (CI) makes it a failure.
        pytest.skip(
            f"'{name}' is not installed: the man page tests need it "
            "(Debian: apt-get install mandoc man-db)"
        )
    return path


# --- tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_is_lint_clean_under_mandoc(page: Path) -> None:
    proc = subprocess.run(
        [_tool("mandoc"), "-T", "lint", "-W", "warning", str(page)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_renders_with_man_and_has_a_name_section(page: Path) -> None:
    env = {**os.environ, "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat", "LC_ALL": "C.UTF-8"}
    proc = subprocess.run(
        [_tool("man"), "-P", "cat", "-l", str(page)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert re.search(r"^NAME$", proc.stdout, re.MULTILINE), proc.stdout[:500]
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80


def test_generated_field_lists_match_the_schema() -> None:
    text = CONFIG_PAGE.read_text(encoding="utf-8")
    assert sorted(m["name"] for m in _REGION.finditer(text)) == sorted(GENERATED)
    assert text == render_page(text), (
        f"{CONFIG_PAGE.name} is out of date with mastercontrol/config/schema.py; run "
        "`.venv/bin/python -m tests.unit.test_man_pages` and commit the result"
    )


def _schema_tables() -> list[tuple[Setting, ...]]:
    return [
        value
        for value in vars(schema).values()
        if isinstance(value, tuple) and value and all(isinstance(s, Setting) for s in value)
    ]


def test_every_setting_of_every_schema_table_is_in_the_config_page() -> None:
    text = _plain(CONFIG_PAGE.read_text(encoding="utf-8"))
    tables = _schema_tables()
    assert schema.WORKLOAD in tables and schema.INVENTORY_FILE in tables
    missing = sorted({s.name for t in tables for s in t if not re.search(rf"\b{s.name}\b", text)})
    assert missing == []


def test_config_page_documents_no_unknown_field() -> None:
    # In page order; names shared by two tables (name, env, tags) must appear once in each.
    expected = [prefix + s.name for table, prefix in GENERATED.values() for s in table]
    documented = [m["name"] for m in _FIELD_HEAD.finditer(CONFIG_PAGE.read_text("utf-8"))]
    assert documented == expected


def test_every_ctl_command_and_its_options_are_in_the_ctl_page() -> None:
    sections = _sections(CTL_PAGE)
    commands = _items(sections["COMMANDS"])
    subcommands = _subcommands(ctl_parser())
    assert sorted(commands) == sorted(subcommands)
    for name, sub in subcommands.items():
        for opt in _options(sub):
            assert re.search(rf"(?<![\w-]){re.escape(opt)}\b", commands[name]), (name, opt)


def test_global_ctl_options_are_in_the_ctl_page() -> None:
    text = " ".join(_items(_sections(CTL_PAGE)["OPTIONS"]).values())
    for opt in _options(ctl_parser()):
        if not opt.startswith("-") or opt in ("-h",):
            continue
        assert opt in text, opt


def test_every_daemon_option_is_in_the_daemon_page() -> None:
    options = _items(_sections(DAEMON_PAGE)["OPTIONS"])
    text = " ".join(options.values())
    for opt in [*_options(daemon_parser()), "--help"]:
        assert re.search(rf"(?<![\w-]){re.escape(opt)}\b", text), opt


def test_exit_status_tables_list_the_codes_the_code_uses() -> None:
    ctl_codes = set(_items(_sections(CTL_PAGE)["EXIT STATUS"]))
    assert ctl_codes == {
        str(c)
        for c in (
            errors.EXIT_OK,
            errors.EXIT_FAILURE,
            errors.EXIT_USAGE,
            errors.EXIT_NOT_RUNNING,
            errors.EXIT_UNKNOWN_WORKLOAD,
            errors.EXIT_UNREACHABLE,
            errors.EXIT_INTERRUPTED,
        )
    }
    daemon_codes = set(_items(_sections(DAEMON_PAGE)["EXIT STATUS"]))
    assert daemon_codes == {
        str(c) for c in (0, errors.EX_SOFTWARE, errors.EX_TEMPFAIL, errors.EX_CONFIG)
    }


def test_field_lines_escape_roff_requests_and_backslashes() -> None:
    setting = Setting("x", checks.STRING, None, None, ".starts with a dot and has \\ in it")
    assert field_lines((setting,), "p.") == [
        ".TP",
        "\\fBp.x\\fR (string; default: none)",
        "\\&.starts with a dot and has \\e in it",
    ]


if __name__ == "__main__":
    # Regenerate the field lists of mastercontrol.yaml.5 from the schema tables.
    old = CONFIG_PAGE.read_text(encoding="utf-8")
    new = render_page(old)
    CONFIG_PAGE.write_text(new, encoding="utf-8")
    print(f"{CONFIG_PAGE}: {'updated' if new != old else 'already up to date'}", file=sys.stderr)
