"""SSH settings for deploys: connections that REJECT unknown host keys, known_hosts, rsync's ssh.

Fabric's Connection hard-codes paramiko's AutoAddPolicy (it trusts any key on first sight);
`connect()` replaces it with RejectPolicy and loads the deployer's own known_hosts, so an
unknown key is refused and a changed key (BadHostKeyException) stops that client before any
command runs. The known_hosts file is written only by `fab setup --accept-new-host-keys`
(`accept_host_key`), which prints each fingerprint. rsync runs the OpenSSH client with the same
file and StrictHostKeyChecking=yes.

Fabric and paramiko are imported only here and in the other deploy/ modules; must not import
the daemon, the store's internals or the API.
"""

from __future__ import annotations

import base64
import hashlib
import shlex
import socket
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import paramiko
from fabric import Config, Connection

from mastercontrol.config.model import InventoryClient


class Reach(StrEnum):
    """Why a connection attempt did not give a usable connection."""

    UNREACHABLE = "unreachable"  # refused, timed out, no route: pending, not failed
    HOST_KEY_CHANGED = "host_key_changed"
    HOST_KEY_UNKNOWN = "host_key_unknown"
    AUTH_FAILED = "auth_failed"


class ConnectFailed(Exception):
    def __init__(self, reach: Reach, message: str) -> None:
        super().__init__(message)
        self.reach = reach


@dataclass(frozen=True)
class SshSettings:
    known_hosts: Path
    connect_timeout: float


def host_entry(host: str, port: int) -> str:
    """The known_hosts name of host:port (OpenSSH's `[host]:port` for a port other than 22)."""
    return host if port == 22 else f"[{host}]:{port}"


def fingerprint(key: paramiko.PKey) -> str:
    """`SHA256:...` as `ssh-keygen -lf` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def connect(client: InventoryClient, settings: SshSettings) -> Connection:
    """An open Fabric connection to `client`, or ConnectFailed saying why not.

    No command has run when this raises: the host key is checked during the handshake.
    """
    config = Config(overrides={"load_ssh_configs": False, "run": {"hide": True, "warn": True}})
    kwargs: dict[str, object] = {
        "allow_agent": False,
        "banner_timeout": settings.connect_timeout,
        "auth_timeout": settings.connect_timeout,
    }
    if client.ssh_key is not None:
        kwargs["key_filename"] = [client.ssh_key]
        kwargs["look_for_keys"] = False
    conn = Connection(
        client.host,
        user=client.ssh_user,
        port=client.ssh_port,
        config=config,
        connect_timeout=max(1, round(settings.connect_timeout)),
        connect_kwargs=kwargs,
    )
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    if settings.known_hosts.is_file():
        conn.client.load_host_keys(str(settings.known_hosts))
    where = f"{client.ssh_user}@{client.host}:{client.ssh_port}"
    try:
        conn.open()
    except paramiko.BadHostKeyException as exc:
        conn.close()
        raise ConnectFailed(
            Reach.HOST_KEY_CHANGED,
            f"{where}: HOST KEY CHANGED (now {fingerprint(exc.key)}, known_hosts has "
            f"{fingerprint(exc.expected_key)}); refused before any command ran",
        ) from None
    except paramiko.AuthenticationException as exc:
        conn.close()
        raise ConnectFailed(Reach.AUTH_FAILED, f"{where}: authentication failed: {exc}") from None
    except (TimeoutError, OSError, EOFError) as exc:
        conn.close()
        raise ConnectFailed(Reach.UNREACHABLE, f"{where}: unreachable: {exc}") from None
    except paramiko.SSHException as exc:
        conn.close()
        if "known_hosts" in str(exc):
            raise ConnectFailed(
                Reach.HOST_KEY_UNKNOWN,
                f"{where}: host key not in {settings.known_hosts}; run "
                "`fab setup --accept-new-host-keys` and check the fingerprint it prints",
            ) from None
        raise ConnectFailed(Reach.UNREACHABLE, f"{where}: SSH failed: {exc}") from None
    return conn


def scan_host_key(host: str, port: int, timeout: float) -> paramiko.PKey:
    """The host key `host:port` presents (no authentication, no command)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = timeout
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    finally:
        transport.close()
        sock.close()


def accept_host_key(client: InventoryClient, settings: SshSettings) -> tuple[str, str]:
    """Record the key `client` presents in known_hosts; (fingerprint, what happened).

    A key already recorded for that host is kept: a changed key is reported, never replaced.
    """
    key = scan_host_key(client.host, client.ssh_port, settings.connect_timeout)
    name = host_entry(client.host, client.ssh_port)
    known = paramiko.HostKeys()
    if settings.known_hosts.is_file():
        known.load(str(settings.known_hosts))
    recorded = known.lookup(name) or {}
    old = recorded.get(key.get_name())
    if old is not None:
        if old == key:
            return fingerprint(key), "already known"
        return fingerprint(key), f"CHANGED (known_hosts has {fingerprint(old)}); not replaced"
    settings.known_hosts.parent.mkdir(parents=True, exist_ok=True)
    with settings.known_hosts.open("a", encoding="ascii") as f:
        f.write(f"{name} {key.get_name()} {key.get_base64()}\n")
    return fingerprint(key), "added"


def rsync_argv(src: Path, client: InventoryClient, dest: str, settings: SshSettings) -> list[str]:
    """rsync of `src/` into `dest/` on the client, over OpenSSH with the same host-key rules.

    The venv and the install marker that bootstrap.sh makes stay (excluded from --delete), so a
    resumed deploy does not rebuild them. `--link-dest` against the client's `current` release
    hard-links every file that did not change (most of the wheelhouse) instead of sending it;
    rsync replaces files by rename, never in place, so the releases never share a write. With no
    `current` yet rsync says so on stderr and copies everything.
    """
    ssh = [
        "ssh", "-F", "/dev/null", "-p", str(client.ssh_port),
        "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={settings.known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", f"ConnectTimeout={max(1, round(settings.connect_timeout))}",
    ]  # fmt: skip
    if client.ssh_key is not None:
        ssh += ["-o", "IdentitiesOnly=yes", "-i", client.ssh_key]
    return [
        "rsync", "-a", "--delete", "--exclude=/venv", "--exclude=/.installed",
        f"--link-dest={client.install_dir.rstrip('/')}/current/",
        "-e", shlex.join(ssh), f"{src}/", f"{client.ssh_user}@{client.host}:{dest}/",
    ]  # fmt: skip
