"""Frozen dataclasses that a validated configuration becomes, and every setting's default.

These are the only configuration objects the rest of the package sees. They are built by
`mastercontrol.config.load` from the settings table in `mastercontrol.config.schema`; nothing
else constructs them from user input. The field defaults below are the ONE place a default is
written: the settings tables (and so the docs) and engine/backoff.py read them through
`field_default`. Imports only the standard library.
"""

from __future__ import annotations

import dataclasses
import socket
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

LOG_MAX_BYTES = 5 * 1024 * 1024  # a workload's log and the daemon's own rotate past this size
LOG_BACKUPS = 3  # rotated log files kept


class WorkloadType(StrEnum):
    AGENT = "agent"
    SCRIPT = "script"
    SERVICE = "service"


class RunMode(StrEnum):
    SCHEDULE = "schedule"  # one run per cron tick
    FOREVER = "forever"  # restarted after every exit
    N_TIMES = "n_times"  # exactly max_runs runs in total, counted durably


class CatchUp(StrEnum):
    SKIP = "skip"  # ticks missed while the daemon was down are dropped
    ONCE = "once"  # one catch-up run if at least one tick was missed


DEFAULT_RUN_MODE: dict[WorkloadType, RunMode] = {
    WorkloadType.AGENT: RunMode.SCHEDULE,
    WorkloadType.SCRIPT: RunMode.N_TIMES,
    WorkloadType.SERVICE: RunMode.FOREVER,
}


@dataclass(frozen=True)
class HealthCheck:
    """A service liveness probe; exactly one of tcp, http, command is set."""

    tcp: int | None = None  # port on 127.0.0.1
    http: str | None = None  # URL; a 2xx/3xx answer is healthy
    command: tuple[str, ...] | None = None  # argv; exit 0 is healthy
    interval: float = 30.0  # seconds between probes
    timeout: float = 5.0  # seconds one probe may take
    failures: int = 3  # consecutive failures that restart the service
    start_period: float = 0.0  # seconds after start before the first probe


@dataclass(frozen=True)
class WorkloadConfig:
    """One workload file, validated. Equality is what reload uses to tell "changed"."""

    name: str
    type: WorkloadType
    run_mode: RunMode
    module: str | None = None  # Python module to import in the child
    entry_point: str = "run"  # callable in module, called with **params
    command: tuple[str, ...] | None = None  # argv to exec instead of module (non-Python programs)
    schedule: str | None = None  # cron expression (run_mode schedule)
    max_runs: int | None = None  # total runs (run_mode n_times)
    catch_up: CatchUp = CatchUp.SKIP
    version: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None  # seconds per run, then SIGTERM, then SIGKILL after stop_timeout
    memory_limit_mb: int | None = None  # RLIMIT_AS headroom in MB above the child's start baseline
    cpu_nice: int = 0  # -20..19
    max_rss_mb: int | None = None  # resident memory cap, enforced by sampling (reason rss_limit)
    tags: tuple[str, ...] = ()
    enabled: bool = True
    env: dict[str, str] = field(default_factory=dict)
    clean_env: bool = False  # True: a minimal environment (child/privileges.py) plus env
    working_dir: str | None = None
    user: str | None = None  # run as this account (name or uid); the daemon must be root
    group: str | None = None  # primary group (name or gid); default: the user's
    max_processes: int | None = None  # RLIMIT_NPROC (per real uid: meaningful with user)
    stop_timeout: float = 10.0  # seconds between SIGTERM and SIGKILL
    stop_signal: str = "TERM"  # TERM, INT, QUIT, HUP, USR1, USR2
    start_seconds: float = 1.0  # a forever run that stays up this long counts as started
    restart_delay: float = 1.0  # first backoff delay after a quick failure; 0 allowed
    restart_delay_max: float = 60.0  # backoff cap
    max_retries: int = 5  # consecutive quick failures before FATAL
    fatal_retry_delay: float = 300.0  # slow retry out of FATAL; 0 = stay FATAL
    log_max_bytes: int = LOG_MAX_BYTES  # rotate <name>.log past this size (load: daemon's)
    log_backups: int = LOG_BACKUPS  # rotated files kept (<name>.log.1 ...) (load: daemon's)
    health_check: HealthCheck | None = None
    source: str = ""  # path of the file this came from (for messages; excluded from equality)
    source_line: int = 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WorkloadConfig):
            return NotImplemented
        return self.comparable() == other.comparable()

    def __hash__(self) -> int:
        return hash(self.name)

    def comparable(self) -> tuple[Any, ...]:
        """Every field that changes what runs; the source location does not."""
        return tuple(
            getattr(self, f)
            for f in self.__dataclass_fields__
            if f not in ("source", "source_line")
        )


@dataclass(frozen=True)
class DaemonSettings:
    """The `daemon:` section of daemon.yaml."""

    log_level: str = "info"  # debug, info, warning, error
    sample_interval: float = 10.0  # seconds between psutil samples of workloads and the system
    shutdown_timeout: float = 30.0  # upper bound for stopping everything on down/SIGTERM
    socket_group: str | None = None  # group owning the IPC socket (then mode 0660)
    read_group: str | None = None  # group that may run the read-only IPC commands
    log_max_bytes: int = LOG_MAX_BYTES  # default for workloads and the daemon's own log
    log_backups: int = LOG_BACKUPS
    history_days: float = 30.0  # run and event history older than this is pruned
    history_max_runs: int = 1000  # runs kept per workload (events: 10 times as many)


@dataclass(frozen=True)
class FleetSettings:
    """The `fleet:` section: this device as a client of the central API."""

    enabled: bool = False
    client_name: str | None = None  # default: the hostname
    api_host: str = "127.0.0.1"
    api_port: int = 9100
    central_api_url: str | None = None
    heartbeat_interval_seconds: float = 30.0
    api_token: str | None = None
    api_token_file: str | None = None  # read by config.secrets.resolve_token, never stored
    api_url: str | None = None  # how the central reaches this API; derived when not given

    def __post_init__(self) -> None:
        if self.api_url is None:
            object.__setattr__(self, "api_url", derived_api_url(self.api_host, self.api_port))


def derived_api_url(host: str, port: int) -> str:
    """http://HOST:PORT of a listener; a wildcard address is advertised by the hostname."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"  # an IPv6 literal in a URL
    return f"http://{host}:{port}"


@dataclass(frozen=True)
class CentralSettings:
    """The `central:` section: this device is the control host."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8080
    db_path: str | None = None
    inventory_path: str | None = None
    api_token: str | None = None
    api_token_file: str | None = None
    stale_after_seconds: float = 90.0
    offline_after_seconds: float = 300.0
    flush_interval_seconds: float = 5.0
    accept_unknown_clients: bool = False
    history_sample_seconds: float = 300.0
    history_full_resolution_hours: float = 24.0
    history_retention_days: float = 7.0
    client_timeout_seconds: float = 10.0
    intake_workers: int = 0


@dataclass(frozen=True)
class DaemonConfig:
    """daemon.yaml, validated. Every section is optional; absent means the defaults."""

    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    fleet: FleetSettings = field(default_factory=FleetSettings)
    central: CentralSettings = field(default_factory=CentralSettings)
    source: str = ""


@dataclass(frozen=True)
class InventoryClient:
    """One device of the fleet, with inventory defaults already applied."""

    name: str
    host: str
    ssh_user: str = "pi"
    ssh_port: int = 22
    ssh_key: str | None = None
    install_dir: str = "/opt/mastercontrol"
    python: str = "python3"  # the client's interpreter that builds each release's venv
    workloads: tuple[str, ...] = ()  # workload names deployed there; empty = all
    env: dict[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    api_url: str | None = None  # where the central calls this client's API
    api_token: str | None = field(default=None, repr=False)  # never in a log line
    api_token_file: str | None = None


@dataclass(frozen=True)
class DeploySettings:
    """inventory.yaml's `deploy:` section: how `fab deploy` rolls a release out.

    Relative paths are relative to the inventory file's directory (the loader resolves them).
    """

    batch: int = 2
    connect_timeout_seconds: float = 10.0
    health_deadline_seconds: float = 60.0
    min_healthy_seconds: float = 5.0
    max_failed: int = 0
    keep_releases: int = 5
    config_dir: str = "configs"
    app_dir: str | None = None
    state_dir: str = ".deploy"
    known_hosts: str | None = None


@dataclass(frozen=True)
class Inventory:
    """inventory.yaml: the fleet the control host knows about and deploys to."""

    clients: tuple[InventoryClient, ...] = ()
    source: str = ""
    deploy: DeploySettings = field(default_factory=DeploySettings)
    central_url: str | None = None  # from `defaults:`; where the deployer journals too
    central_api_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ConfigProblem:
    """One problem of a ConfigSet, structured (line 0: the whole file) for JSON answers."""

    file: str
    line: int
    field: str
    message: str


@dataclass(frozen=True)
class ConfigSet:
    """The result of loading a config dir: what is valid, and every problem found.

    `workloads` holds only workloads from files with no problems, so a bad file never stops the
    others from running. `problems` are `FILE:LINE: field: message` strings, sorted by file/line.
    """

    workloads: dict[str, WorkloadConfig]
    daemon: DaemonConfig
    problems: list[str]
    located: tuple[ConfigProblem, ...] = ()  # the same problems, structured (same order)
    # `FILE:LINE: field: warning: message`: valid, loaded, but probably not what was meant.
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def field_default(cls: type[Any], name: str) -> Any:
    """The default of field `name` of dataclass `cls` (a factory is called), or
    `dataclasses.MISSING` for a field without one. KeyError if `cls` has no such field."""
    spec = {f.name: f for f in dataclasses.fields(cls)}[name]
    if spec.default is not dataclasses.MISSING:
        return spec.default
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return dataclasses.MISSING
