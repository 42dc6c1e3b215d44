"""The `@central-api` internal service: the central API under Waitress, plus its flush thread.

Owns the service's life: read `central:` of daemon.yaml and inventory.yaml, open the fleet DB,
fill the coalescer, serve until SIGTERM, and flush the coalesced heartbeats every
`central.flush_interval_seconds` from one background thread (this is a child of the master, not
the master: threads are fine here). The inventory is re-imported when its file changes and on
SIGHUP. With `central.intake_workers` N > 0 this process does not accept on the public port:
N worker processes do (api/central_intake.py, started and supervised by api/intake_owner.py)
and hand it the heartbeats they accept; it serves what they forward on a private unix socket
(`intake_server`). Heartbeats past what it can take are shed with 503 + Retry-After
(api/overload.py, marks from CENTRAL_TUNING: `central_shedder`). On stop the last interval is
flushed. Called by the child bootstrap as `main(**params)` with the internal-service params
(config_dir, socket_path, state_dir, log_dir, section_digest); no secret is ever a param. Must
not import daemon/ or child/.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import waitress.server

from mastercontrol.api.central_app import Central, create_central_app
from mastercontrol.api.central_heartbeat import with_heartbeat_fast_path
from mastercontrol.api.intake_forward import with_intake_peer
from mastercontrol.api.intake_link import Hello
from mastercontrol.api.intake_owner import (
    SOCKET_NAME,
    IntakeSetupError,
    IntakeWorkers,
    bind_private,
    listen_public,
    private_dir,
)
from mastercontrol.api.overload import Shedder, with_load_shedding
from mastercontrol.api.server import TUNING, serve
from mastercontrol.config.load import load_daemon_config, load_inventory
from mastercontrol.config.model import CentralSettings
from mastercontrol.config.secrets import SecretError, resolve_token
from mastercontrol.errors import EX_CONFIG, MasterControlError
from mastercontrol.fleet.coalescer import Coalescer
from mastercontrol.fleet.fleetstore import SqliteFleetStore
from mastercontrol.fleet.liveness import LivenessRule
from mastercontrol.fleet.roster import Roster, RosterEntry

log = logging.getLogger("mastercontrol.central")

# The control host is not a Pi Zero: more threads for the heartbeat flood, and a deep backlog
# so a reconnect storm queues in the kernel instead of being refused. connection_limit stays
# bounded: past it Waitress stops accepting instead of spinning (the cliff in issue 10).
CENTRAL_TUNING: dict[str, Any] = {
    **TUNING,
    "threads": 8,
    "connection_limit": 256,
    "backlog": 2048,
    "channel_timeout": 60,
    # Waitress drops every X-Forwarded-* header from an untrusted peer. The TLS proxy of
    # docs/operations.md runs on the control host itself: its X-Forwarded-Proto (the session
    # cookie is then Secure) is believed from loopback. X-Forwarded-For never is (api/peer.py).
    "trusted_proxy": "127.0.0.1",
    "trusted_proxy_headers": {"x-forwarded-proto"},
}
PRUNE_EVERY = 3600.0
INTAKE_DIR = "central-intake"  # in the state dir: the private socket of the intake workers
SWITCH_INTERVAL = 0.0005  # seconds: the GIL's switch interval with intake workers (see below)


def central_shedder(flush_running_for: Callable[[], float], settings: CentralSettings) -> Shedder:
    """Shed heartbeats (api/overload.py) with half of Waitress's connection limit waiting in its
    task queue (~150 ms of work at ~1.2 ms a heartbeat), with the connections one thread
    count short of the limit (past it Waitress stops accepting and the backlog grows
    unanswered), or while a flush has run for two intervals (at least one second): the
    coalescer's `flush_running_for`, or in an intake worker what the central reports of it."""
    limit = int(CENTRAL_TUNING["connection_limit"])
    shedder = Shedder(
        max_queue=limit // 2,
        max_connections=limit - int(CENTRAL_TUNING["threads"]),
        max_flush_seconds=max(2 * settings.flush_interval_seconds, 1.0),
    )
    shedder.flush_running_for = flush_running_for
    return shedder


def central_server(central: Central, settings: CentralSettings) -> tuple[Any, Shedder]:
    """The bound Waitress server of the central (`settings.port` 0: a free port), its layers
    outermost first: load shedding, the heartbeat fast path, the Bottle app."""
    shedder = central_shedder(central.coalescer.flush_running_for, settings)
    app = with_heartbeat_fast_path(create_central_app(central), central)
    server = waitress.server.create_server(
        with_load_shedding(app, shedder, central),
        host=settings.host,
        port=settings.port,
        **CENTRAL_TUNING,
    )
    shedder.attach_waitress(server)
    return server, shedder


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def inventory_file(config_dir: Path, settings: CentralSettings) -> Path:
    if not settings.inventory_path:
        return config_dir / "inventory.yaml"
    path = Path(settings.inventory_path)
    return path if path.is_absolute() else config_dir / path


def fleet_db(state_dir: Path, config_dir: Path, settings: CentralSettings) -> Path:
    if not settings.db_path:
        return state_dir / "fleet.db"
    path = Path(settings.db_path)
    return path if path.is_absolute() else config_dir / path


def load_roster(
    path: Path, shared_token: str | None, accept_unknown: bool
) -> tuple[Roster, list[RosterEntry]]:
    """inventory.yaml as a Roster; problems are logged (the file may be absent: no clients)."""
    entries: list[RosterEntry] = []
    if path.exists():
        inventory, problems = load_inventory(path)
        for problem in problems:
            log.error("inventory: %s", problem)
        for c in inventory.clients:
            try:
                token = resolve_token(c.api_token, c.api_token_file)
            except SecretError as exc:
                # Never fall back to the shared token for a client whose own token is broken:
                # a token nobody holds locks it out until the file is fixed.
                log.error("inventory: client %s: %s; its heartbeats are refused", c.name, exc)
                token = secrets.token_hex(32)
            entries.append(RosterEntry(c.name, c.host, tags=c.tags, api_url=c.api_url, token=token))
    else:
        log.info("no inventory at %s: only clients that heartbeat are known", path)
    return Roster(entries, shared_token, accept_unknown), entries


class Flusher(threading.Thread):
    """Flushes every interval, prunes the history hourly, re-imports a changed inventory."""

    def __init__(self, central: Central, settings: CentralSettings, inventory: Path) -> None:
        super().__init__(name="central-flush", daemon=True)
        self.central = central
        self.settings = settings
        self.inventory = inventory
        self.stopping = threading.Event()
        self.inventory_watch = InventoryWatch(inventory)
        self._next_prune = 0.0

    def run(self) -> None:
        while not self.stopping.wait(self.settings.flush_interval_seconds):
            self.tick()

    def tick(self) -> None:
        if self.inventory_watch.due():
            self.reload_inventory()
        try:
            stats = self.central.coalescer.flush()
            if stats.seconds > self.settings.flush_interval_seconds / 2:
                log.warning("slow flush: %d clients in %.2f s", stats.clients, stats.seconds)
            now = time.monotonic()
            if now >= self._next_prune:
                self._next_prune = now + PRUNE_EVERY
                s = self.settings
                self.central.store.prune(
                    self.central.clock(),
                    retention=s.history_retention_days * 86400,
                    full_resolution=s.history_full_resolution_hours * 3600,
                )
        except MasterControlError as exc:
            self.central.flush_errors += 1
            log.error("flush failed (kept for the next one): %s", exc)

    def reload_inventory(self) -> None:
        roster, entries = load_roster(
            self.inventory, self.central.operator_token, self.settings.accept_unknown_clients
        )
        self.central.roster = roster
        self.central.coalescer.set_inventory(entries)
        log.info("inventory loaded: %d clients", len(entries))


class InventoryWatch:
    """Whether inventory.yaml is due to be read again: it changed (mtime or size) since the last
    look, or a reload was asked for (`requested`, set on SIGHUP). Used by the central's flush
    thread and by each intake worker (api/central_intake.py)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.requested = threading.Event()
        self._stamp = _file_stamp(path)

    def due(self) -> bool:
        stamp = _file_stamp(self.path)
        if not self.requested.is_set() and stamp == self._stamp:
            return False
        self.requested.clear()
        self._stamp = stamp
        return True


def _file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def main(
    config_dir: str,
    socket_path: str = "",
    state_dir: str = ".",
    log_dir: str = ".",
    section_digest: str = "",
    **_future: Any,
) -> None:
    """Run the central API until SIGTERM. Exits 78 (EX_CONFIG) on an unusable configuration."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    config = Path(config_dir)
    cfg, problems = load_daemon_config(config / "daemon.yaml")
    if problems:
        # With a problem the loader returns the defaults: serving them would be a surprise.
        for problem in problems:
            log.error("%s", problem)
        sys.exit(EX_CONFIG)
    settings = cfg.central
    try:
        token = resolve_token(settings.api_token, settings.api_token_file)
    except SecretError as exc:
        log.error("central.api_token_file: %s", exc)
        sys.exit(EX_CONFIG)
    if token is None and not is_loopback(settings.host):
        log.error(
            "refusing to listen on %s without central.api_token (or api_token_file)",
            settings.host,
        )
        sys.exit(EX_CONFIG)
    inventory = inventory_file(config, settings)
    store = SqliteFleetStore(fleet_db(Path(state_dir), config, settings))
    rule = LivenessRule(
        settings.stale_after_seconds, settings.offline_after_seconds, started_at=time.monotonic()
    )
    coalescer = Coalescer(store, rule, sample_every=settings.history_sample_seconds)
    coalescer.load()
    roster, entries = load_roster(inventory, token, settings.accept_unknown_clients)
    coalescer.set_inventory(entries)
    central = Central(
        coalescer=coalescer,
        store=store,
        roster=roster,
        operator_token=token,
        client_timeout=settings.client_timeout_seconds,
    )
    flusher = Flusher(central, settings, inventory)
    workers: IntakeWorkers | None = None
    if settings.intake_workers:
        try:
            server, workers = intake_server(central, settings, Path(state_dir), inventory)
        except (IntakeSetupError, OSError) as exc:
            log.error("central API with intake workers: %s", exc)
            sys.exit(EX_CONFIG if isinstance(exc, IntakeSetupError) else 1)
    else:
        server, _ = central_server(central, settings)

    def _hup(signum: int, _frame: FrameType | None) -> None:
        flusher.inventory_watch.requested.set()
        if workers is not None:
            workers.reload_requested.set()

    signal.signal(signal.SIGHUP, _hup)
    flusher.start()
    if workers is not None:
        workers.start()
    log.info(
        "central API on http://%s:%s (pid %d, %d inventory clients, %d intake workers)",
        settings.host, settings.port, os.getpid(), len(entries), settings.intake_workers,
    )  # fmt: skip
    try:
        serve(server)
    finally:
        if workers is not None:
            workers.stop()  # first: what they handed over goes into the last flush
        flusher.stopping.set()
        flusher.join(timeout=settings.flush_interval_seconds + 5)
        try:
            coalescer.flush()  # the last interval is not lost on a clean stop
        except MasterControlError as exc:
            log.error("last flush failed: %s", exc)
        store.close()


def intake_server(
    central: Central, settings: CentralSettings, state_dir: Path, inventory: Path
) -> tuple[Any, IntakeWorkers]:
    """With intake workers: this process's Waitress server on its private unix socket (the
    workers forward there; it does not accept on the public port), and the workers, not yet
    started, sharing the public socket made here (api/intake_owner.py)."""
    # The receiver threads wait for the GIL after every message while another thread (the
    # flush, a dashboard page) holds it: at the default 5 ms switch interval that is at most
    # ~200 heartbeats/s per worker during a flush, so the links filled and the workers shed
    # (bench/RESULTS.md, "Several intake processes"). 0.5 ms lets them keep up.
    sys.setswitchinterval(SWITCH_INTERVAL)
    secret = secrets.token_urlsafe(32)
    dir_path = state_dir / INTAKE_DIR
    dir_fd = private_dir(dir_path)
    backlog = int(CENTRAL_TUNING["backlog"])
    private = bind_private(dir_fd, backlog)
    public = listen_public(settings.host, settings.port, backlog)
    app = with_intake_peer(with_heartbeat_fast_path(create_central_app(central), central), secret)
    server = waitress.server.create_server(app, sockets=[private], **CENTRAL_TUNING)

    def hello(index: int) -> Hello:
        return Hello(
            index=index, secret=secret, settings=settings, operator_token=central.operator_token,
            inventory=str(inventory), socket_dir=str(dir_path), socket_name=SOCKET_NAME,
        )  # fmt: skip

    workers = IntakeWorkers(
        settings.intake_workers, public, central, hello, central.coalescer.flush_running_for
    )
    central.intake_counts = workers.counts
    return server, workers
