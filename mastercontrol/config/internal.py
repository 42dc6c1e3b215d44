"""The internal services the master synthesizes from daemon.yaml: their names and configs.

With `fleet.enabled: true` the master supervises two services of its own, `@client-api`
(module mastercontrol.api.client_service) and `@heartbeat` (mastercontrol.fleet
.heartbeat_service), as two children so that a hung control host cannot stall the API. They are
ordinary `WorkloadConfig`s: the planner starts, stops and restarts them like any service, and a
change of the daemon.yaml section they read changes their `section_digest` param, so a reload
restarts them. Names starting with `@` are reserved for them (no workload file can take one).
The master never imports the service modules: the child bootstrap imports `module` after the
fork. Their params hold paths and a digest only, never a secret (params show up in `status
--json` and the state DB). Imports only the standard library and the sibling config modules.
"""

from __future__ import annotations

import dataclasses
import json
import os

# Keyed BLAKE2 straight from its builtin module: `hashlib`/`hmac` load OpenSSL's libcrypto into
# the master, +3.5 MiB RSS measured (bench/RESULTS.md, master RSS); `_blake2` is CPython's own
# code and a keyed blake2b is a MAC in its own right (RFC 7693), no HMAC construction needed.
from _blake2 import blake2b
from pathlib import Path
from typing import Any

from mastercontrol.config.model import (
    DaemonConfig,
    DaemonSettings,
    FleetSettings,
    RunMode,
    WorkloadConfig,
    WorkloadType,
)

INTERNAL_PREFIX = "@"
CLIENT_API = "@client-api"
HEARTBEAT = "@heartbeat"
CENTRAL_API = "@central-api"
SERVICES: dict[str, str] = {  # name -> module run in the child (entry point `main`)
    CLIENT_API: "mastercontrol.api.client_service",
    HEARTBEAT: "mastercontrol.fleet.heartbeat_service",
    CENTRAL_API: "mastercontrol.api.central_service",
}

# The digest of a section that holds a token must not let anyone who reads `status --json` or
# the state DB test guesses of that token: it is a keyed MAC under a key that lives only in this
# process. Reloads compare digests made with the same key; a new daemon starts every service
# anyway, so nothing compares digests across processes.
_DIGEST_KEY = os.urandom(32)


def is_internal(name: str) -> bool:
    return name.startswith(INTERNAL_PREFIX)


def section_digest(section: Any) -> str:
    """A stable digest of a settings dataclass (a token file's identity included, so replacing
    the file restarts the services that read it)."""
    values = dataclasses.asdict(section)
    token_file = values.get("api_token_file")
    if token_file:
        try:
            info = os.stat(token_file)
            values["api_token_file@"] = [info.st_ino, info.st_mtime_ns, info.st_size]
        except OSError:
            values["api_token_file@"] = None
    canonical = json.dumps(values, sort_keys=True, default=str).encode()
    return blake2b(canonical, key=_DIGEST_KEY, digest_size=32).hexdigest()


def _service(
    name: str, params: dict[str, str], daemon: DaemonSettings, source: str
) -> WorkloadConfig:
    return WorkloadConfig(
        name=name,
        type=WorkloadType.SERVICE,
        run_mode=RunMode.FOREVER,
        module=SERVICES[name],
        entry_point="main",
        params=params,
        version=None,
        log_max_bytes=daemon.log_max_bytes,
        log_backups=daemon.log_backups,
        source=source,
    )


def internal_workloads(
    config: DaemonConfig,
    *,
    config_dir: Path,
    socket_path: Path,
    state_dir: Path,
    log_dir: Path,
) -> dict[str, WorkloadConfig]:
    """The internal services `config` asks for, by name (empty when fleet is disabled)."""
    services: dict[str, WorkloadConfig] = {}
    source = config.source or str(config_dir / "daemon.yaml")
    paths = {
        "config_dir": str(config_dir),
        "socket_path": str(socket_path),
        "state_dir": str(state_dir),
        "log_dir": str(log_dir),
    }
    fleet: FleetSettings = config.fleet
    if fleet.enabled:
        params = {**paths, "section_digest": section_digest(fleet)}
        for name in (CLIENT_API, HEARTBEAT):
            services[name] = _service(name, params, config.daemon, source)
    if config.central.enabled:
        # The control host: its own section's digest, so a change of `central:` restarts only it
        # (inventory.yaml changes are picked up by the service itself, without a restart).
        params = {**paths, "section_digest": section_digest(config.central)}
        services[CENTRAL_API] = _service(CENTRAL_API, params, config.daemon, source)
    return services
