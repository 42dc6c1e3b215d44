"""The `@heartbeat` internal service: POST this device's state to the central API, forever.

The master forks it like any service and calls `main(**params)` after the fork (it never imports
this module itself). The service reads its settings from daemon.yaml, asks the master for the
workload list over the IPC socket (`MasterClient`), samples the system, and POSTs the body of
`fleet.heartbeat.build_payload` to `<central_api_url>/api/v1/heartbeat` with
`Authorization: Bearer <token>`. When and what it logs is `HeartbeatPolicy`'s decision: the
first heartbeat goes out at once, then one every interval ±10 %; failures back off and log one
line per outage; a 503 or 429 with Retry-After is waited out as the central asks (bounded,
with jitter: `HeartbeatPolicy.failed`). A master that does not answer is logged once per
outage too and the heartbeat still goes out (marked `master.reachable: false`): neither the
central nor the master being away makes this process exit. SIGTERM/SIGINT end it at once,
even mid-request.

The token is read here, from the config, and goes only into the Authorization header: never
into a log line, the params, or the process title. Redirects are not followed, so the header
never travels to another host.

Imports the standard library, psutil (through sysmetrics), config.load, config.secrets and
ipc.client; never daemon/, child/, api/, bottle or waitress.
"""

from __future__ import annotations

import http.client
import json
import logging
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from mastercontrol import __version__
from mastercontrol.config.load import load_daemon_config
from mastercontrol.config.secrets import resolve_token
from mastercontrol.errors import EX_CONFIG, IPCError, MasterControlError
from mastercontrol.fleet import no_redirects
from mastercontrol.fleet.heartbeat import (
    HeartbeatPolicy,
    build_payload,
    heartbeat_url,
    retry_after_seconds,
)
from mastercontrol.fleet.sysmetrics import system_metrics
from mastercontrol.ipc.client import DaemonUnreachable, MasterClient
from mastercontrol.release import current_release

HTTP_TIMEOUT = 5.0  # seconds per POST, at most; shorter for shorter intervals
IPC_TIMEOUT = 5.0
RETRY_AFTER_STATUSES = (429, 503)  # a busy central's answers; their Retry-After is honoured
MAX_REPLY_BYTES = 64 * 1024  # the central's answer is read (to reuse nothing) and dropped

log = logging.getLogger("mastercontrol.heartbeat")


class _Stop(BaseException):
    """Raised by the SIGTERM/SIGINT handler, from wherever the service is (sleep or request).

    A BaseException, like SystemExit: code that turns failures into "not available" catches
    Exception (sysmetrics' per-figure guard, logging's emit) and must not swallow a stop, after
    which further SIGTERMs are ignored and the service would never end.
    """


def _on_stop(signum: int, frame: FrameType | None) -> None:
    # Further signals are ignored so the way out (a log line) is not cut short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise _Stop(signal.Signals(signum).name)


@dataclass(frozen=True)
class Settings:
    """What one heartbeat service needs, read once at start (a change restarts the service)."""

    client_name: str
    url: str
    interval: float
    token: str | None
    api_url: str | None


def load_settings(config_dir: Path) -> Settings:
    """Settings from daemon.yaml; MasterControlError with a clear message if unusable."""
    cfg, problems = load_daemon_config(config_dir / "daemon.yaml")
    if problems:
        # The problem texts are the validator's; `validate` prints them in full. Only the
        # count here: a problem line may quote a value, and a value may be the token.
        raise MasterControlError(
            f"{config_dir / 'daemon.yaml'} has {len(problems)} problem(s); "
            "run `mastercontrol-ctl validate` to see them"
        )
    fleet = cfg.fleet
    if not fleet.central_api_url:
        raise MasterControlError("fleet.central_api_url is not set in daemon.yaml")
    return Settings(
        client_name=fleet.client_name or socket.gethostname(),
        url=heartbeat_url(fleet.central_api_url),
        interval=float(fleet.heartbeat_interval_seconds),
        # SecretError (a MasterControlError) for an unusable token file; never quotes a token.
        token=resolve_token(fleet.api_token, fleet.api_token_file),
        api_url=fleet.api_url,
    )


def post_json(
    opener: urllib.request.OpenerDirector,
    url: str,
    body: dict[str, Any],
    token: str | None,
    timeout: float,
) -> None:
    """POST `body`; raises OSError (URLError, HTTPError, timeouts) or HTTPException unless the
    answer is 2xx."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"mastercontrol-heartbeat/{__version__}",
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body, separators=(",", ":")).encode("utf-8")
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    with opener.open(request, timeout=timeout) as response:
        response.read(MAX_REPLY_BYTES)


def failure_reason(exc: BaseException) -> str:
    """A short, token-free description of a failed POST for the one log line of an outage."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}".rstrip()
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return str(reason.strerror or reason) if isinstance(reason, OSError) else str(reason)
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror  # "Connection reset by peer"
    return f"{type(exc).__name__}: {exc}"


class HeartbeatService:
    """One loop: ask the master, build, send, wait. Clock, sleep and sender are injectable."""

    def __init__(
        self,
        settings: Settings,
        master: MasterClient,
        disk_paths: dict[str, Path],
        *,
        send: Callable[[dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.master = master
        self.disk_paths = disk_paths
        self.clock = clock
        self.sleep = sleep
        self.policy = HeartbeatPolicy(settings.interval, target=settings.url, clock=clock)
        self.timeout = min(HTTP_TIMEOUT, max(1.0, settings.interval))
        opener = no_redirects.opener()
        self.send = send or (
            lambda body: post_json(opener, settings.url, body, settings.token, self.timeout)
        )
        self.master_down = False

    def master_state(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The master's daemon view and workloads; (None, []) if it does not answer."""
        try:
            reply = self.master.workloads()
        except (DaemonUnreachable, IPCError) as exc:
            if not self.master_down:
                log.warning("master not answering (%s); heartbeats go on without workloads", exc)
                self.master_down = True
            return None, []
        if self.master_down:
            log.info("master answering again")
            self.master_down = False
        daemon = reply.get("daemon")
        workloads = reply.get("workloads")
        return (
            daemon if isinstance(daemon, dict) else {},
            [w for w in workloads if isinstance(w, dict)] if isinstance(workloads, list) else [],
        )

    def payload(self) -> dict[str, Any]:
        master, workloads = self.master_state()
        version = master.get("version") if master else None
        return build_payload(
            client_name=self.settings.client_name,
            sent_at=time.time(),
            daemon_version=str(version) if version else __version__,
            release=current_release(),
            workloads=workloads,
            system=system_metrics(self.disk_paths),
            api_url=self.settings.api_url,
            master=master,
        )

    def beat(self) -> float:
        """Send one heartbeat (built now: the latest state, never a backlog); the next delay."""
        try:
            self.send(self.payload())
        except urllib.error.HTTPError as exc:
            retry_after = None
            if exc.code in RETRY_AFTER_STATUSES:
                retry_after = retry_after_seconds(exc.headers.get("Retry-After"), time.time())
            nxt = self.policy.failed(failure_reason(exc), retry_after)
        # URLError and timeouts are OSErrors; a garbled answer is an HTTPException.
        except (OSError, http.client.HTTPException, ValueError) as exc:
            nxt = self.policy.failed(failure_reason(exc))
        else:
            nxt = self.policy.succeeded()
        if nxt.log:
            (log.warning if self.policy.in_outage else log.info)(nxt.log)
        return nxt.delay

    def run(self, beats: int | None = None) -> None:
        """Beat until stopped (or `beats` times, for tests); the first beat goes out at once."""
        done = 0
        while beats is None or done < beats:
            started = self.clock()
            delay = self.beat()
            done += 1
            if beats is None or done < beats:
                self.sleep(max(0.0, started + delay - self.clock()))


def _setup_logging() -> None:
    # The forked child inherits the master's logging setup, whose handlers write to fds the
    # bootstrap closed: use a handler of our own on stderr, which goes to @heartbeat's log.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("heartbeat %(levelname)s %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


def main(
    *, config_dir: str, socket_path: str, state_dir: str, log_dir: str, section_digest: str
) -> None:
    """Entry point of `@heartbeat` (params as the internal-service contract fixes them)."""
    _setup_logging()
    signal.signal(signal.SIGTERM, _on_stop)
    signal.signal(signal.SIGINT, _on_stop)
    try:
        try:
            settings = load_settings(Path(config_dir))
        except MasterControlError as exc:
            log.error("cannot send heartbeats: %s", exc)
            raise SystemExit(EX_CONFIG) from None
        if settings.token is None:
            log.warning("no fleet.api_token set: the central will refuse these heartbeats")
        log.info(
            "sending heartbeats as %s to %s every %gs (±10%%)",
            settings.client_name,
            settings.url,
            settings.interval,
        )
        service = HeartbeatService(
            settings,
            MasterClient(Path(socket_path), timeout=IPC_TIMEOUT),
            {"state": Path(state_dir), "log": Path(log_dir)},
        )
        service.run()
    except _Stop as stop:
        log.info("stopping on %s", stop)
