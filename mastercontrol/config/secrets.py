"""The API tokens of daemon.yaml: reading a token file safely, and warning about exposed ones.

`resolve_token(token, token_file)` is how the internal services (client API, heartbeat sender,
central API) get their secret: the inline `api_token`, or the text of `api_token_file` with
whitespace stripped, refused when every user may read it. Tokens never leave this module except
as the return value: no logging, no messages that quote them. Imports only the standard library
and mastercontrol.errors / mastercontrol.config.model.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mastercontrol.config.model import DaemonConfig, Inventory
from mastercontrol.errors import MasterControlError

MAX_TOKEN_FILE_BYTES = 4096  # a token is a line; anything bigger is the wrong file


class SecretError(MasterControlError):
    """A token file that cannot be used (missing, unreadable, world-readable, empty, ...)."""


def resolve_token(token: str | None, token_file: str | os.PathLike[str] | None) -> str | None:
    """The token to use: `token`, or the stripped contents of `token_file`; None if neither.

    Raises SecretError when both are given, or the file is missing, unreadable, not a regular
    file, readable by every user, empty or larger than MAX_TOKEN_FILE_BYTES.
    """
    if token_file is None or token_file == "":
        return token or None
    if token:
        raise SecretError("give api_token or api_token_file, not both")
    path = Path(token_file)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        raise SecretError(f"cannot open token file {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SecretError(f"token file {path} is not a regular file")
        if info.st_mode & stat.S_IROTH:
            raise SecretError(
                f"token file {path} is readable by every user (mode "
                f"{stat.S_IMODE(info.st_mode):04o}); run chmod o-r {path}"
            )
        data = os.read(fd, MAX_TOKEN_FILE_BYTES + 1)
    except OSError as exc:
        raise SecretError(f"cannot read token file {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise SecretError(f"token file {path} is larger than {MAX_TOKEN_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SecretError(f"token file {path} is not UTF-8 text") from None
    if not text:
        raise SecretError(f"token file {path} is empty")
    return text


def token_warnings(config: DaemonConfig, daemon_file: str | os.PathLike[str]) -> list[str]:
    """What `validate` and the daemon's start should say about the tokens of daemon.yaml.

    `FILE: warning: ...` lines: inline tokens in a daemon.yaml every user may read, and token
    files of an enabled section that `resolve_token` would refuse.
    """
    source = os.fspath(daemon_file)
    warnings: list[str] = []
    sections = (("fleet", config.fleet), ("central", config.central))
    inline = [name for name, sec in sections if sec.api_token]
    if inline:
        try:
            mode = os.stat(source).st_mode
        except OSError:
            mode = 0
        if mode & stat.S_IROTH:
            keys = ", ".join(f"{name}.api_token" for name in inline)
            warnings.append(
                f"{source}: warning: holds {keys} and is readable by every user "
                f"(chmod o-r {source}, or move the token to api_token_file)"
            )
    for name, sec in sections:
        if sec.enabled and sec.api_token_file:
            try:
                resolve_token(None, sec.api_token_file)
            except SecretError as exc:
                warnings.append(f"{source}: warning: {name}.api_token_file: {exc}")
    return warnings


def inventory_token_warnings(config: DaemonConfig, inventory: Inventory) -> list[str]:
    """`FILE: warning: ...` lines for the control host's inventory (only with central enabled):
    a client without a token of its own heartbeats with `central.api_token`, so that device
    holds the operator's token; a client's token file that `resolve_token` would refuse locks
    the client out (the central refuses its heartbeats)."""
    if not config.central.enabled:
        return []
    warnings: list[str] = []
    shared: list[str] = []
    for client in inventory.clients:
        if not client.api_token and not client.api_token_file:
            shared.append(client.name)
        elif client.api_token_file and not client.api_token:
            try:
                resolve_token(None, client.api_token_file)
            except SecretError as exc:
                warnings.append(
                    f"{inventory.source}: warning: client {client.name}: {exc}; the central "
                    "refuses its heartbeats until the file is fixed"
                )
    if shared:
        warnings.insert(
            0,
            f"{inventory.source}: warning: {len(shared)} client(s) without a token of their "
            f"own ({', '.join(shared[:10])}{', ...' if len(shared) > 10 else ''}): their "
            "heartbeats are accepted with central.api_token, so each such device holds the "
            "operator's token; give every client its own api_token_file",
        )
    return warnings
