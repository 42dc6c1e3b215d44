"""The `@client-api` internal service: `main(**params)`, run by the master as a forked child.

Owns the service's start-up: it reads daemon.yaml itself (no secret ever travels in params,
which `status --json` and the state DB show), resolves the token (fleet.api_token or
fleet.api_token_file), refuses to listen on a non-loopback address without one, builds the
client app over a MasterClient of the IPC socket and serves it with Waitress until SIGTERM.
Everything it says goes to stderr, which the master writes to the workload's log; the token
never does. Must not import daemon/ or child/.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from mastercontrol.api.auth import valid_token
from mastercontrol.api.client_app import create_client_app
from mastercontrol.api.server import make_server, serve
from mastercontrol.config.checks import is_loopback
from mastercontrol.config.load import load_daemon_config
from mastercontrol.config.secrets import SecretError, resolve_token
from mastercontrol.errors import EX_CONFIG
from mastercontrol.ipc.client import MasterClient

log = logging.getLogger("mastercontrol.api")

EXIT_CANNOT_LISTEN = 1  # the port is taken or not ours: worth a retry with backoff


def main(
    *,
    config_dir: str,
    socket_path: str,
    state_dir: str,
    log_dir: str,
    section_digest: str = "",
    **_unknown: str,
) -> int:
    """Serve the client API; returns the exit code (EX_CONFIG for a setting it cannot use)."""
    del section_digest  # only there so a change of our daemon.yaml section restarts us
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    daemon_yaml = Path(config_dir) / "daemon.yaml"
    cfg, problems = load_daemon_config(daemon_yaml)
    if problems:
        # Only the count: a problem line may quote a value, and that value may be the token.
        log.error(
            "not starting: %s has %d problem(s); `mastercontrol-ctl validate` lists them",
            daemon_yaml,
            len(problems),
        )
        return EX_CONFIG
    fleet = cfg.fleet
    try:
        token = resolve_token(fleet.api_token, fleet.api_token_file)
    except SecretError as exc:
        log.error("not starting: %s", exc)
        return EX_CONFIG
    host, port = fleet.api_host, fleet.api_port
    if token is None and not is_loopback(host):
        log.error(
            "refusing to listen on %s:%d without a token: %s is not a loopback address; set "
            "fleet.api_token_file (or fleet.api_token) in %s",
            host,
            port,
            host,
            daemon_yaml,
        )
        return EX_CONFIG
    if token is not None and not valid_token(token):
        log.error("not starting: the API token must be printable ASCII without spaces")
        return EX_CONFIG
    if token is None:
        log.warning("no API token set: every local user can use the API on %s:%d", host, port)
    master = MasterClient(Path(socket_path))
    disks = {"state": Path(state_dir), "log": Path(log_dir)}
    app = create_client_app(master, token, disk_paths=disks)
    try:
        server = make_server(app, host, port)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
        return EXIT_CANNOT_LISTEN
    log.info(
        "listening on http://%s:%s/api/v1 (token %s)",
        host,
        server.effective_port,
        "required" if token else "not required",
    )
    serve(server)
    return 0
