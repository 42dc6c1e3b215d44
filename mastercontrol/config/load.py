"""Load and validate workload files, daemon.yaml and inventory.yaml into the frozen model.

Every problem is one line, `FILE:LINE: field: message` (LINE is the offending key's line, or the
mapping's first key for a missing field; file-level errors may add `:COL`). A file with any
problem contributes nothing, and the other files still load. Walks the tables of `schema`;
imports only the standard library and the sibling config modules (no daemon, store or network).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mastercontrol.config import checks, schema
from mastercontrol.config.cron import CronSchedule
from mastercontrol.config.hostcheck import host_problems
from mastercontrol.config.model import (
    DEFAULT_RUN_MODE,
    CentralSettings,
    ConfigProblem,
    ConfigSet,
    DaemonConfig,
    DaemonSettings,
    DeploySettings,
    FleetSettings,
    HealthCheck,
    Inventory,
    InventoryClient,
    RunMode,
    WorkloadConfig,
    WorkloadType,
)
from mastercontrol.config.schema import Setting
from mastercontrol.config.yamlsource import (
    MAX_INVENTORY_VALUES,
    Map,
    Node,
    Problem,
    Scalar,
    kind_of,
    parse,
)

_C = TypeVar("_C")

DAEMON_FILE = "daemon.yaml"
INVENTORY_FILE = "inventory.yaml"
NOT_WORKLOAD_FILES = frozenset((DAEMON_FILE, INVENTORY_FILE))
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class _Located:
    """A problem of one file, kept structured until the end so problems sort by line."""

    source: str
    problem: Problem

    def __str__(self) -> str:
        p = self.problem
        where = self.source
        if p.line:  # 0: the problem concerns the whole file (unreadable, badly named)
            where += f":{p.line}" + (f":{p.column}" if p.column else "")
        return f"{where}: {p.field}: {p.message}" if p.field else f"{where}: {p.message}"


@dataclass
class _Fields:
    """The settings found in one mapping: valid values, and the line of every key present."""

    node: Map
    path: str
    values: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    sections: dict[str, _Fields] = field(default_factory=dict)
    misspelt: set[str] = field(default_factory=set)  # settings an unknown key probably meant

    def missing(self, name: str, problems: list[Problem], why: str = "") -> None:
        # A key reported as a likely misspelling of `name` already tells the user; no echo.
        if name not in self.misspelt:
            message = "missing required field" + (f" {why}" if why else "")
            problems.append(Problem(self.node.first_line, self.label(name), message))

    def has(self, name: str) -> bool:
        return name in self.lines

    def label(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name


# --- the table walker --------------------------------------------------------------------------


def _apply_table(
    node: Map, table: tuple[Setting, ...], path: str, problems: list[Problem]
) -> _Fields:
    settings = schema.by_name(table)
    fields = _Fields(node, path)
    for entry in node.entries.values():
        label = fields.label(entry.key)
        setting = settings.get(entry.key)
        if setting is None:
            close = difflib.get_close_matches(entry.key, list(settings), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            fields.misspelt.update(close)
            problems.append(Problem(entry.key_line, label, f"unknown field{hint}"))
            continue
        value_node = entry.value
        if _is_null(value_node) and (setting.required or setting.default is None):
            if setting.required:
                fields.lines[entry.key] = entry.key_line
                problems.append(Problem(entry.key_line, label, "missing value"))
            continue  # `key:` or `key: null` on an optional setting means "not set"
        fields.lines[entry.key] = entry.key_line
        try:
            value = setting.type.convert(value_node)
        except checks.FieldError as exc:
            problems.append(Problem(exc.line or entry.key_line, label, exc.message))
            continue
        if setting.section and isinstance(value, Map):
            fields.sections[entry.key] = _apply_table(value, setting.section, label, problems)
            continue
        if setting.validator is not None:
            try:
                value = setting.validator(value)
            except ValueError as exc:
                problems.append(Problem(entry.key_line, label, str(exc)))
                continue
        fields.values[entry.key] = value
    for setting in table:
        if setting.required and setting.name not in fields.lines:
            fields.missing(setting.name, problems)
    return fields


def _is_null(node: Node) -> bool:
    return isinstance(node, Scalar) and node.value is None and not node.quoted


def _top_mapping(node: Node | None, what: str, problems: list[Problem]) -> Map | None:
    if node is None:
        return None
    if not isinstance(node, Map):
        got = kind_of(node)
        problems.append(Problem(node.line, "", f"top level must be a mapping of {what}, got {got}"))
        return None
    return node


def _read(path: Path) -> tuple[str | None, list[Problem], str | None]:
    """(text, problems, io_error). A file that cannot be read has no line to point at."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, [], f"cannot read: {exc.strerror or exc}"
    try:
        return data.decode("utf-8"), [], None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return None, [Problem(line, "", f"not UTF-8 text (byte {exc.start})")], None


# --- workloads ---------------------------------------------------------------------------------


def _check_workload(f: _Fields, problems: list[Problem]) -> RunMode | None:
    """Cross-field rules; returns the effective run mode (None if type/run_mode are invalid)."""
    v = f.values
    mode: RunMode | None = v.get("run_mode")
    if mode is None and not f.has("run_mode") and "type" in v:
        mode = DEFAULT_RUN_MODE[WorkloadType(v["type"])]
    has_module, has_command = f.has("module"), f.has("command")
    if has_module and has_command:
        problems.append(Problem(f.lines["command"], "command", "give module or command, not both"))
    elif not has_module and not has_command:
        f.missing("module", problems, "(or give command: to run a program)")
    if has_command and f.has("entry_point"):
        msg = "only used with module, not with command"
        problems.append(Problem(f.lines["entry_point"], "entry_point", msg))
    if mode is None:
        return None
    rules = (("schedule", RunMode.SCHEDULE), ("max_runs", RunMode.N_TIMES))
    for name, needs in rules:
        if f.has(name) and mode is not needs:
            msg = f"only used with run_mode {needs} (run_mode is {mode})"
            problems.append(Problem(f.lines[name], name, msg))
        elif not f.has(name) and mode is needs:
            f.missing(name, problems, f"for run_mode {needs}")
    if f.has("catch_up") and mode is not RunMode.SCHEDULE:
        msg = f"only used with run_mode schedule (run_mode is {mode})"
        problems.append(Problem(f.lines["catch_up"], "catch_up", msg))
    low, high = v.get("restart_delay"), v.get("restart_delay_max")
    if low is not None and high is not None and high < low:
        msg = f"must not be less than restart_delay ({low:g})"
        problems.append(Problem(f.lines["restart_delay_max"], "restart_delay_max", msg))
    if f.has("health_check"):
        line = f.lines["health_check"]
        if mode is not RunMode.FOREVER:
            msg = f"only used with run_mode forever (run_mode is {mode})"
            problems.append(Problem(line, "health_check", msg))
        hc = f.sections.get("health_check")
        probes = [p for p in schema.HEALTH_PROBES if hc is not None and hc.has(p)]
        if hc is not None and not probes:
            msg = "needs one probe: tcp, http or command"
            problems.append(Problem(line, "health_check", msg))
        for extra in probes[1:]:
            assert hc is not None
            msg = f"give only one probe of tcp, http, command (also {probes[0]})"
            problems.append(Problem(hc.lines[extra], hc.label(extra), msg))
    return mode


def _warnings(f: _Fields) -> list[Problem]:
    """Valid settings that are probably a mistake; the workload is loaded all the same."""
    found: list[Problem] = []
    if "schedule" in f.values:
        note = CronSchedule(f.values["schedule"], tz="UTC").warning()
        if note:
            found.append(Problem(f.lines["schedule"], "schedule", f"warning: {note}"))
    if "max_processes" in f.values and "user" not in f.values:
        note = (
            "warning: counts every process of the daemon's user (and root ignores it); "
            "give the workload a user: of its own"
        )
        found.append(Problem(f.lines["max_processes"], "max_processes", note))
    return found


def _workload(
    text: str, source: str, daemon: DaemonSettings, on_host: bool
) -> tuple[WorkloadConfig | None, list[Problem], list[Problem]]:
    """(the workload or None, its problems, its warnings). `on_host`: also check that it can
    run here (hostcheck.py), once its settings are valid."""
    node, problems = parse(text)
    if problems:
        return None, problems, []
    if node is None:
        return None, [Problem(1, "", "file is empty; expected a mapping of workload settings")], []
    top = _top_mapping(node, "workload settings", problems)
    if top is None:
        return None, problems, []
    f = _apply_table(top, schema.WORKLOAD, "", problems)
    mode = _check_workload(f, problems)
    if not problems and on_host:
        problems += host_problems(f.values, f.lines)
    if problems or mode is None:
        return None, problems, []
    values = dict(f.values)
    values["run_mode"] = mode
    values.setdefault("log_max_bytes", daemon.log_max_bytes)
    values.setdefault("log_backups", daemon.log_backups)
    if "health_check" in f.sections:
        values["health_check"] = HealthCheck(**f.sections["health_check"].values)
    workload = WorkloadConfig(**values, source=source, source_line=f.lines["name"])
    return workload, problems, _warnings(f)


# --- daemon.yaml -------------------------------------------------------------------------------


def _check_daemon(f: _Fields, problems: list[Problem]) -> None:
    fleet, central = f.sections.get("fleet"), f.sections.get("central")
    listeners = (
        (fleet, "api_host", FleetSettings.api_host),
        (central, "host", CentralSettings.host),
    )
    for sec, host_key, default_host in listeners:
        if sec is None or not sec.values.get("enabled"):
            continue
        address = sec.values.get(host_key, default_host)
        has_token = sec.has("api_token") or sec.has("api_token_file")
        if not checks.is_loopback(address) and not has_token:
            msg = (
                f"required when {sec.label(host_key)} ({address}) is not a loopback address "
                "(or give api_token_file)"
            )
            line = sec.lines.get(host_key, sec.node.first_line)
            problems.append(Problem(line, sec.label("api_token"), msg))
    for sec in (fleet, central):
        if sec is not None and sec.has("api_token") and sec.has("api_token_file"):
            msg = "give api_token or api_token_file, not both"
            problems.append(Problem(sec.lines["api_token_file"], sec.label("api_token_file"), msg))
    if fleet is not None and fleet.values.get("enabled") and not fleet.has("central_api_url"):
        fleet.missing("central_api_url", problems, "when fleet.enabled is true")
    if central is not None:
        stale = central.values.get("stale_after_seconds", CentralSettings.stale_after_seconds)
        offline = central.values.get("offline_after_seconds", CentralSettings.offline_after_seconds)
        if offline <= stale:  # the defaults are ordered, so one of them was set here
            lines = central.lines
            line = lines.get("offline_after_seconds", lines.get("stale_after_seconds", 1))
            msg = f"must be greater than stale_after_seconds ({stale:g})"
            problems.append(Problem(line, "central.offline_after_seconds", msg))


def _daemon_from_text(text: str, source: str) -> tuple[DaemonConfig, list[Problem]]:
    node, problems = parse(text)
    top = None if problems else _top_mapping(node, "sections (daemon, fleet, central)", problems)
    if top is None:
        return DaemonConfig(source=source), problems
    f = _apply_table(top, schema.DAEMON_FILE, "", problems)
    _check_daemon(f, problems)
    if problems:
        return DaemonConfig(source=source), problems

    def section(name: str) -> dict[str, Any]:
        return _beside(source, f.sections[name].values) if name in f.sections else {}

    config = DaemonConfig(
        daemon=DaemonSettings(**section("daemon")),
        fleet=FleetSettings(**section("fleet")),
        central=CentralSettings(**section("central")),
        source=source,
    )
    return config, problems


TOKEN_KEYS = frozenset({"api_token", "api_token_file"})


def _beside(source: str, values: dict[str, Any]) -> dict[str, Any]:
    """`values` with a relative `api_token_file` taken from the directory of `source` (the file
    that names it), so a config dir carries its token files with it wherever it is run from."""
    token_file = values.get("api_token_file")
    if not token_file or os.path.isabs(token_file):
        return values
    base = os.path.dirname(os.path.abspath(source))
    return {**values, "api_token_file": os.path.normpath(os.path.join(base, token_file))}


def _load_file(
    path: str | os.PathLike[str],
    empty: Callable[[str], _C],
    from_text: Callable[[str, str], tuple[_C, list[Problem]]],
) -> tuple[_C, list[str]]:
    """Read one file with `from_text`; an unreadable file gives `empty(source)` and why."""
    source = os.fspath(path)
    text, problems, io_error = _read(Path(path))
    if io_error is not None:
        return empty(source), [f"{source}: {io_error}"]
    if text is None:
        return empty(source), _strings(source, problems)
    config, problems = from_text(text, source)
    return config, _strings(source, problems)


def load_daemon_config(path: str | os.PathLike[str]) -> tuple[DaemonConfig, list[str]]:
    """Read one daemon.yaml. Problems (unreadable file included) come back with the defaults."""
    return _load_file(path, lambda source: DaemonConfig(source=source), _daemon_from_text)


# --- inventory.yaml ----------------------------------------------------------------------------


def _inventory_from_text(text: str, source: str) -> tuple[Inventory, list[Problem]]:
    node, problems = parse(text, MAX_INVENTORY_VALUES)
    top = None if problems else _top_mapping(node, "sections (defaults, clients)", problems)
    if top is None:
        return Inventory(source=source), problems
    f = _apply_table(top, schema.INVENTORY_FILE, "", problems)
    defaults = dict(f.sections["defaults"].values) if "defaults" in f.sections else {}
    fleet = {s.name: defaults.pop(s.name) for s in schema.INVENTORY_FLEET if s.name in defaults}
    deploy = _deploy_settings(f.sections.get("deploy"))
    clients: list[InventoryClient] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(f.values.get("clients", ())):
        own: list[Problem] = []
        c = _apply_table(item, schema.INVENTORY_CLIENT, f"clients[{i}]", own)
        name = c.values.get("name")
        if name is not None and name in seen:
            msg = f"duplicate client name {name!r} (also at line {seen[name]})"
            own.append(Problem(c.lines["name"], c.label("name"), msg))
        elif name is not None:
            seen[name] = c.lines["name"]
        problems.extend(own)
        if not own:
            inherited = defaults
            if TOKEN_KEYS & c.values.keys():  # a client's own token replaces the default's
                inherited = {k: v for k, v in defaults.items() if k not in TOKEN_KEYS}
            values = _beside(source, {**inherited, **c.values})
            values["env"] = {**defaults.get("env", {}), **c.values.get("env", {})}
            clients.append(InventoryClient(**values))
    inventory = Inventory(clients=tuple(clients), source=source, deploy=deploy, **fleet)
    return inventory, problems


def _deploy_settings(section: _Fields | None) -> DeploySettings:
    """The `deploy:` section as written (relative paths are the deployer's to resolve)."""
    return DeploySettings(**section.values) if section is not None else DeploySettings()


def load_inventory(path: str | os.PathLike[str]) -> tuple[Inventory, list[str]]:
    """Read inventory.yaml: `defaults:` applied to each entry of `clients:`.

    Clients with problems are left out of the result; the problems say why.
    """
    return _load_file(path, lambda source: Inventory(source=source), _inventory_from_text)


# --- config dir / in-memory set ----------------------------------------------------------------


def _strings(source: str, problems: Iterable[Problem]) -> list[str]:
    return [str(_Located(source, p)) for p in sorted(problems, key=_order)]


def _order(p: Problem) -> tuple[int, int]:
    return p.line, p.column


def load_config_files(
    files: Mapping[str, str],
    daemon_text: str | None = None,
    *,
    daemon_source: str = DAEMON_FILE,
) -> ConfigSet:
    """Validate workload files given as {filename: yaml text}: their text only (`load_config_dir`
    also checks that each can run here).

    Names are used as given in messages. A `daemon.yaml` among `files` is the daemon config when
    `daemon_text` is None; `inventory.yaml` is ignored; any other name must end in .yaml/.yml.
    """
    return _load(files, daemon_text, daemon_source, [], on_host=False)


def _load(
    files: Mapping[str, str],
    daemon_text: str | None,
    daemon_source: str,
    located: list[_Located],
    on_host: bool,
) -> ConfigSet:
    for filename, text in files.items():
        if os.path.basename(filename) == DAEMON_FILE and daemon_text is None:
            daemon_text, daemon_source = text, filename
    daemon = DaemonConfig()
    if daemon_text is not None:
        daemon, daemon_problems = _daemon_from_text(daemon_text, daemon_source)
        located += [_Located(daemon_source, p) for p in daemon_problems]
    workloads: dict[str, WorkloadConfig] = {}
    noted: list[_Located] = []
    for filename in sorted(files):
        if os.path.basename(filename) in NOT_WORKLOAD_FILES:
            continue
        if not filename.endswith(YAML_SUFFIXES):
            msg = "not a workload file: the name must end in .yaml or .yml"
            located.append(_Located(filename, Problem(0, "", msg)))
            continue
        workload, problems, warnings = _workload(files[filename], filename, daemon.daemon, on_host)
        located += [_Located(filename, p) for p in problems]
        noted += [_Located(filename, p) for p in warnings]
        if workload is None:
            continue
        other = workloads.get(workload.name)
        if other is not None:
            # The first file (in name order) keeps the name; the later one is the mistake.
            also = f"{other.source}:{other.source_line}"
            msg = f"duplicate workload name {workload.name!r} (also in {also})"
            located.append(_Located(filename, Problem(workload.source_line, "name", msg)))
            continue
        workloads[workload.name] = workload
    located.sort(key=lambda loc: (loc.source, loc.problem.line, loc.problem.column))
    return ConfigSet(
        workloads=workloads,
        daemon=daemon,
        problems=[str(loc) for loc in located],
        located=tuple(
            ConfigProblem(loc.source, loc.problem.line, loc.problem.field, loc.problem.message)
            for loc in located
        ),
        warnings=[str(loc) for loc in noted],
    )


def load_config_dir(config_dir: str | os.PathLike[str]) -> ConfigSet:
    """Every *.yaml / *.yml file of the dir (sorted, not recursive) except daemon.yaml and
    inventory.yaml is one workload; daemon.yaml (optional) holds the daemon settings. Each
    workload is also checked against this host: its module or program is found (without
    running user code), its working_dir, user and group exist (config/hostcheck.py).

    File names in messages are `config_dir` as given joined with the file name.
    """
    base = os.fspath(config_dir)
    try:
        names = sorted(os.listdir(base))
    except OSError as exc:
        reason = "not found" if isinstance(exc, FileNotFoundError) else exc.strerror or str(exc)
        return ConfigSet({}, DaemonConfig(), [f"{base}: config directory {reason}"])
    files: dict[str, str] = {}
    located: list[_Located] = []
    daemon_text: str | None = None
    daemon_source = os.path.join(base, DAEMON_FILE)
    for name in names:
        path = Path(base, name)
        if not name.endswith(YAML_SUFFIXES) or name == INVENTORY_FILE or not path.is_file():
            continue
        source = os.path.join(base, name)
        text, problems, io_error = _read(path)
        if io_error is not None:
            located.append(_Located(source, Problem(0, "", io_error)))
        elif text is None:
            located += [_Located(source, p) for p in problems]
        elif name == DAEMON_FILE:
            daemon_text = text
        else:
            files[source] = text
    return _load(files, daemon_text, daemon_source, located, on_host=True)
