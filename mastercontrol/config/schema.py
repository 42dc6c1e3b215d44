"""The settings tables: every configuration key, declared once with type, default, check and help.

`load.py` walks these tables to validate files and `docgen.py` renders them into
docs/configuration.md, so a key cannot be accepted without being documented. Kinds and
validators live in `checks`. Defaults are not written here: a `MODEL` default is read from the
field of the same name in the table's dataclass (`config/model.py`), so what the docs show is
what the daemon uses; `None` means "not set" and must be the model's default too. Imports only
the standard library and the sibling config modules; no daemon, store or network code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mastercontrol.config import model
from mastercontrol.config.checks import (
    ARGV,
    BOOLEAN,
    INTEGER,
    LOG_LEVELS,
    MAP_LIST,
    MAPPING,
    NUMBER,
    SECTION,
    SIGNALS,
    STRING,
    STRING_LIST,
    STRING_MAP,
    WORKLOAD_NAME_MAX,
    Kind,
    Validator,
    absolute_path,
    account,
    argv_list,
    cron_expression,
    env_names,
    host,
    identifier,
    log_bytes,
    log_level,
    memory_mb,
    module_name,
    name_list,
    name_pattern,
    nice_range,
    non_empty,
    non_negative,
    one_of,
    port,
    positive_int,
    positive_number,
    signal_name,
    url,
    workload_name,
)


@dataclass(frozen=True)
class Setting:
    name: str
    type: Kind
    default: Any
    validator: Validator | None
    help: str
    required: bool = False
    doc_default: str | None = None  # shown in the docs instead of repr(default)
    section: tuple[Setting, ...] = ()  # sub-settings of a mapping-typed setting


class _FromModel:
    def __repr__(self) -> str:
        return "MODEL"


MODEL: Any = _FromModel()  # the default is the model dataclass's (see `_bound`)


def _bound(cls: type[Any], table: tuple[Setting, ...]) -> tuple[Setting, ...]:
    """`table` with every MODEL default replaced by the default of `cls`'s field of that name.

    Fails at import, naming the setting, when a row and its model disagree: a setting with no
    field, a literal default (write MODEL), or None where the model has a value.
    """
    bound: list[Setting] = []
    for setting in table:
        where = f"{cls.__name__}.{setting.name}"
        try:
            default = model.field_default(cls, setting.name)
        except KeyError:
            raise TypeError(f"setting {setting.name!r} has no field {where}") from None
        if default is dataclasses.MISSING:
            default = None  # required, or computed by the loader (run_mode)
        if setting.default is MODEL:
            setting = dataclasses.replace(setting, default=default)
        elif setting.default is not None or default is not None:
            raise TypeError(f"setting {setting.name!r}: write MODEL, the default is {where}'s")
        bound.append(setting)
    return tuple(bound)


def _choices(enum: type[StrEnum]) -> str:
    return ", ".join(m.value for m in enum)


# --- tables ------------------------------------------------------------------------------------

HEALTH_CHECK: tuple[Setting, ...] = _bound(model.HealthCheck, (
    Setting("tcp", INTEGER, None, port, "Probe: connect to this port on 127.0.0.1."),
    Setting("http", STRING, None, url, "Probe: GET this URL; a 2xx or 3xx answer is healthy."),
    Setting("command", ARGV, None, argv_list, "Probe: run this program; exit 0 is healthy."),
    Setting("interval", NUMBER, MODEL, positive_number, "Seconds between probes."),
    Setting("timeout", NUMBER, MODEL, positive_number, "Seconds one probe may take."),
    Setting("failures", INTEGER, MODEL, positive_int,
            "Consecutive failures that restart the service (backoff and FATAL as for exits)."),
    Setting("start_period", NUMBER, MODEL, non_negative,
            "Seconds after start before the 1st probe."),
))  # fmt: skip
HEALTH_PROBES = ("tcp", "http", "command")

WORKLOAD: tuple[Setting, ...] = _bound(model.WorkloadConfig, (
    Setting("name", STRING, None, workload_name,
            f"Unique name: letters, digits, _ . -, at most {WORKLOAD_NAME_MAX} characters; not "
            "starting with . - or @ (internal services), not mastercontrold (the daemon's log).",
            True),
    Setting("type", STRING, None, one_of(model.WorkloadType), f"{_choices(model.WorkloadType)}.",
            True),
    Setting("run_mode", STRING, None, one_of(model.RunMode),
            f"{_choices(model.RunMode)}. schedule: one run per cron tick; forever: restarted "
            "after every exit; n_times: max_runs runs in total, counted across restarts.",
            doc_default="agent: schedule, script: n_times, service: forever"),
    Setting("schedule", STRING, None, cron_expression,
            'Cron expression: 5 fields, 6 with seconds last, or @hourly...; e.g. "*/5 * * * *". '
            "Required for run_mode schedule. Quote it."),
    Setting("max_runs", INTEGER, None, positive_int,
            "Total number of runs. Required for run_mode n_times."),
    Setting("catch_up", STRING, MODEL, one_of(model.CatchUp),
            "schedule only. skip: ticks missed while the daemon was down are dropped; "
            "once: one run if any tick was missed."),
    Setting("module", STRING, None, module_name,
            "Python module imported in the child. Give module or command, not both."),
    Setting("entry_point", STRING, MODEL, identifier,
            "Function in module, called with params as keyword arguments. Not with command."),
    Setting("command", ARGV, None, argv_list,
            "Program to exec instead of a module: a list, or a string split like a shell "
            "(no expansion)."),
    Setting("version", STRING, None, non_empty, 'Free-form version label; quote it: "1.10".'),
    Setting("params", MAPPING, MODEL, None, "Keyword arguments passed to entry_point."),
    Setting("timeout", NUMBER, None, positive_number,
            "Seconds one run may take; then stop_signal, then SIGKILL after stop_timeout."),
    Setting("memory_limit_mb", INTEGER, None, memory_mb,
            "Address-space limit (RLIMIT_AS) in MB above the child's start; past it "
            "allocations fail with MemoryError."),
    Setting("cpu_nice", INTEGER, MODEL, nice_range,
            "Scheduling niceness, -20 (first) to 19 (last)."),
    Setting("max_rss_mb", INTEGER, None, memory_mb,
            "Resident memory cap in MB, checked by sampling; the run is stopped past it."),
    Setting("tags", STRING_LIST, MODEL, None, "Labels for listing and filtering."),
    Setting("enabled", BOOLEAN, MODEL, None, "false keeps the workload loaded but never started."),
    Setting("env", STRING_MAP, MODEL, env_names,
            "Extra environment variables (values are strings), added to the daemon's whole "
            "environment (or, with clean_env, to a minimal one)."),
    Setting("clean_env", BOOLEAN, MODEL, None,
            "true: the workload does not inherit the daemon's environment; it gets only PATH, "
            "HOME, LANG, LANGUAGE, LC_*, TZ, USER and LOGNAME (for its user), plus env."),
    Setting("working_dir", STRING, None, absolute_path,
            "Directory the child starts in (entered as user, when given)."),
    Setting("user", STRING, None, account,
            "Run as this user (name or uid): supplementary groups, group, then user are set "
            "in the child before the workload runs, and HOME, USER, LOGNAME are the user's. "
            "Needs the daemon to run as root. The log stays the daemon's."),
    Setting("group", STRING, None, account,
            "Primary group (name or gid); default: the user's. Needs root."),
    Setting("max_processes", INTEGER, None, positive_int,
            "Process cap (RLIMIT_NPROC). The kernel counts every process of the real user, "
            "not of the workload, and ignores it for root: meaningful with user."),
    Setting("stop_timeout", NUMBER, MODEL, positive_number,
            "Seconds between stop_signal and SIGKILL."),
    Setting("stop_signal", STRING, MODEL, signal_name,
            f"Signal that asks a run to stop: {', '.join(SIGNALS)}."),
    Setting("start_seconds", NUMBER, MODEL, non_negative,
            "A run that stays up this long counts as started (resets the backoff); with a "
            "health_check, once a check has passed too."),
    Setting("restart_delay", NUMBER, MODEL, non_negative,
            "Seconds between a service's run ending and its next start, and the first backoff "
            "delay after a quick failure; 0 restarts at once."),
    Setting("restart_delay_max", NUMBER, MODEL, positive_number, "Backoff cap in seconds."),
    Setting("max_retries", INTEGER, MODEL, non_negative,
            "Consecutive quick failures before the workload is FATAL."),
    Setting("fatal_retry_delay", NUMBER, MODEL, non_negative,
            "Seconds before a slow retry out of FATAL (one try, then FATAL again if it fails "
            "quickly); 0 stays FATAL."),
    Setting("log_max_bytes", INTEGER, MODEL, log_bytes,
            "Rotate the workload's log file (NAME.log in the log dir) past this many bytes.",
            doc_default="daemon.log_max_bytes"),
    Setting("log_backups", INTEGER, MODEL, non_negative, "Rotated log files kept.",
            doc_default="daemon.log_backups"),
    Setting("health_check", SECTION, None, None,
            "Liveness probe for run_mode forever; exactly one of tcp, http, command.",
            section=HEALTH_CHECK),
))  # fmt: skip

DAEMON: tuple[Setting, ...] = _bound(model.DaemonSettings, (
    Setting("log_level", STRING, MODEL, log_level, f"One of {', '.join(LOG_LEVELS)}."),
    Setting("sample_interval", NUMBER, MODEL, positive_number,
            "Seconds between samples of the system and of workloads with max_rss_mb; the "
            "others are sampled when status, list --json or top asks."),
    Setting("shutdown_timeout", NUMBER, MODEL, positive_number,
            "Upper bound in seconds for stopping everything on down or SIGTERM."),
    Setting("socket_group", STRING, None, name_pattern,
            "Group that owns the control socket (mode 0660) and may run every command; "
            "default: only root and the daemon's own user (0600)."),
    Setting("read_group", STRING, None, name_pattern,
            "Group whose members may run the read-only commands (ping, list, status, logs); "
            "the socket is then mode 0666 and its directory traversable, and each client's "
            "credentials (SO_PEERCRED) decide: anyone else gets permission_denied."),
    Setting("log_max_bytes", INTEGER, MODEL, log_bytes,
            "Default log size limit for workloads and the daemon's own log."),
    Setting("log_backups", INTEGER, MODEL, non_negative, "Default number of rotated logs kept."),
    Setting("history_days", NUMBER, MODEL, positive_number,
            "Days of run and event history kept in the state database; older rows are deleted "
            "(a run still going never is)."),
    Setting("history_max_runs", INTEGER, MODEL, positive_int,
            "Runs kept per workload, newest first; events are kept for up to 10 times as many. "
            "Pruned by the daemon's housekeeping, in bounded chunks."),
))  # fmt: skip

FLEET: tuple[Setting, ...] = _bound(model.FleetSettings, (
    Setting("enabled", BOOLEAN, MODEL, None,
            "Run the client API and send heartbeats to the central API."),
    Setting("client_name", STRING, None, name_pattern, "This device's name in the fleet.",
            doc_default="the hostname"),
    Setting("api_host", STRING, MODEL, host,
            "Address the client API listens on; not loopback requires api_token."),
    Setting("api_port", INTEGER, MODEL, port, "Port of the client API."),
    Setting("central_api_url", STRING, None, url,
            "Base URL of the central API, e.g. http://control:8080. Required when enabled."),
    Setting("heartbeat_interval_seconds", NUMBER, MODEL, positive_number,
            "Seconds between heartbeats (with jitter)."),
    Setting("api_token", STRING, None, non_empty,
            "Bearer token the client API requires and heartbeats send. Prefer api_token_file: "
            "then the secret need not sit in this file."),
    Setting("api_token_file", STRING, None, non_empty,
            "File holding the token (whitespace stripped); must not be readable by every "
            "user; a relative path is taken from this file's directory. Give api_token or "
            "api_token_file, not both."),
    Setting("api_url", STRING, None, url,
            "How the central API reaches this client's API (sent with each heartbeat).",
            doc_default="http://API_HOST:API_PORT (the hostname for a wildcard api_host)"),
))  # fmt: skip

MAX_INTAKE_WORKERS = 32


def intake_workers(value: int) -> int:
    if not 0 <= value <= MAX_INTAKE_WORKERS:
        raise ValueError(f"must be between 0 and {MAX_INTAKE_WORKERS}, got {value}")
    return value


CENTRAL: tuple[Setting, ...] = _bound(model.CentralSettings, (
    Setting("enabled", BOOLEAN, MODEL, None,
            "This device is the control host: run the central API."),
    Setting("host", STRING, MODEL, host,
            "Address the central API listens on; not loopback requires api_token."),
    Setting("port", INTEGER, MODEL, port, "Port of the central API and dashboard."),
    Setting("db_path", STRING, None, non_empty, "Fleet database file."),
    Setting("inventory_path", STRING, None, non_empty,
            "inventory.yaml whose clients are listed before their first heartbeat."),
    Setting("api_token", STRING, None, non_empty, "Bearer token the central API requires."),
    Setting("api_token_file", STRING, None, non_empty,
            "File holding that token; not readable by every user; relative to this file's "
            "directory. Not with api_token."),
    Setting("stale_after_seconds", NUMBER, MODEL, positive_number,
            "A client silent this long is shown stale."),
    Setting("offline_after_seconds", NUMBER, MODEL, positive_number,
            "A client silent this long is shown offline."),
    Setting("flush_interval_seconds", NUMBER, MODEL, positive_number,
            "Heartbeats are kept in memory and written to the fleet DB in one transaction "
            "this often; a crash loses at most this much."),
    Setting("accept_unknown_clients", BOOLEAN, MODEL, None,
            "Accept heartbeats (with central.api_token) from names inventory.yaml does not "
            "list; they are shown, never called."),
    Setting("history_sample_seconds", NUMBER, MODEL, positive_number,
            "At most one metrics sample per client this often goes into the history."),
    Setting("history_full_resolution_hours", NUMBER, MODEL, positive_number,
            "History older than this is averaged into one point per client and hour."),
    Setting("history_retention_days", NUMBER, MODEL, positive_number,
            "History older than this is deleted."),
    Setting("client_timeout_seconds", NUMBER, MODEL, positive_number,
            "How long a remote call to a client's API may take before it is a 504."),
    Setting("intake_workers", INTEGER, MODEL, intake_workers,
            "Processes that accept heartbeats on central.port and hand them to the one "
            "central process (one Python process uses at most one core). 0: that one process "
            "serves everything. About the number of cores minus one on a control host with "
            "4 or more cores (docs/operations.md, sizing)."),
))  # fmt: skip

DAEMON_FILE: tuple[Setting, ...] = (
    Setting("daemon", SECTION, None, None, "The daemon itself.", section=DAEMON),
    Setting("fleet", SECTION, None, None, "This device as a fleet client.", section=FLEET),
    Setting("central", SECTION, None, None, "This device as the control host.", section=CENTRAL),
)

INVENTORY_DEFAULTS: tuple[Setting, ...] = _bound(model.InventoryClient, (
    Setting("ssh_user", STRING, MODEL, non_empty, "SSH login user."),
    Setting("ssh_port", INTEGER, MODEL, port, "SSH port."),
    Setting("ssh_key", STRING, None, non_empty, "Private key file; default: ssh's own choice."),
    Setting("install_dir", STRING, MODEL, absolute_path,
            "Where releases are installed on the client."),
    Setting("python", STRING, MODEL, non_empty,
            "The client's Python (3.11 or later) that builds each release's venv."),
    Setting("workloads", STRING_LIST, MODEL, name_list,
            "Workload names deployed to the client; empty means all."),
    Setting("env", STRING_MAP, MODEL, env_names,
            "Environment for the client's daemon; merged over defaults' env."),
    Setting("tags", STRING_LIST, MODEL, None, "Labels for selecting clients."),
    Setting("api_url", STRING, None, url,
            "Where the central calls the client's API; default: the URL of its latest "
            "heartbeat, accepted only when its host is this client's host."),
    Setting("api_token", STRING, None, non_empty,
            "The client's own token (its fleet.api_token): its heartbeats must carry it and "
            "the central calls its API with it. Default: central.api_token."),
    Setting("api_token_file", STRING, None, non_empty,
            "File holding that token; not readable by every user; relative to this file's "
            "directory. Not with api_token."),
))  # fmt: skip

INVENTORY_CLIENT: tuple[Setting, ...] = _bound(model.InventoryClient, (
    Setting("name", STRING, None, name_pattern, "Client name (its fleet.client_name).", True),
    Setting("host", STRING, None, host, "Host name or address to reach it over SSH.", True),
)) + INVENTORY_DEFAULTS  # fmt: skip

# Only in `defaults:` (they describe the fleet, not one client).
INVENTORY_FLEET: tuple[Setting, ...] = _bound(model.Inventory, (
    Setting("central_url", STRING, None, url,
            "The central API (http://host:port) the deployer journals to, whose heartbeats gate "
            "clients without a reachable api_url, and that `--dry-run` asks; "
            "MCTL_CENTRAL_URL overrides it."),
    Setting("central_api_token", STRING, None, non_empty,
            "The operator's token for that central API (central.api_token)."),
))  # fmt: skip

INVENTORY_DEPLOY: tuple[Setting, ...] = _bound(model.DeploySettings, (
    Setting("batch", INTEGER, MODEL, positive_int, "Clients per wave (`fab deploy --batch`)."),
    Setting("connect_timeout_seconds", NUMBER, MODEL, positive_number,
            "A client not reached over SSH within this is pending, not failed."),
    Setting("health_deadline_seconds", NUMBER, MODEL, positive_number,
            "How long a wave has to become healthy after its switch."),
    Setting("min_healthy_seconds", NUMBER, MODEL, non_negative,
            "How long every client of a wave must stay healthy to pass the gate."),
    Setting("max_failed", INTEGER, MODEL, non_negative,
            "Clients whose install may fail before their switch (they keep their old release) "
            "while the deployment goes on; one more stops it. 0: stop at the first."),
    Setting("keep_releases", INTEGER, MODEL, positive_int,
            "Releases kept on each client (the current and previous ones always are)."),
    Setting("config_dir", STRING, MODEL, non_empty,
            "Workload files of the release; `<config_dir>/<client>/` adds or overrides files "
            "for one client (its daemon.yaml, say)."),
    Setting("app_dir", STRING, None, non_empty,
            "Workload code shipped with the release (importable by the workloads)."),
    Setting("state_dir", STRING, MODEL, non_empty,
            "The deployer's journal, lock, builds and known_hosts on the control host."),
    Setting("known_hosts", STRING, None, non_empty,
            "The clients' host keys; default: `<state_dir>/known_hosts`."),
))  # fmt: skip

INVENTORY_FILE: tuple[Setting, ...] = (
    Setting("defaults", SECTION, None, None, "Settings applied to every client.",
            section=INVENTORY_DEFAULTS + INVENTORY_FLEET),
    Setting("deploy", SECTION, None, None, "How `fab deploy` rolls releases out.",
            section=INVENTORY_DEPLOY),
    Setting("clients", MAP_LIST, None, None, "A list of clients.", section=INVENTORY_CLIENT),
)  # fmt: skip


def by_name(table: tuple[Setting, ...]) -> dict[str, Setting]:
    return {s.name: s for s in table}
