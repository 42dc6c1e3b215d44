"""Value kinds (YAML node -> Python value) and validators for the settings tables.

A kind converts a located YAML node and raises FieldError with a one-line message; a validator
takes the converted value and returns it (possibly normalised) or raises ValueError. They are
small and pure so that `schema` can stay one readable table. Imports only the standard library
and `yamlsource`, `cron` and `paths` of this package; never mastercontrol.engine.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from mastercontrol.config.cron import CronSchedule
from mastercontrol.config.internal import is_internal
from mastercontrol.config.paths import DAEMON_LOG_NAME
from mastercontrol.config.yamlsource import (
    Map,
    Node,
    Scalar,
    Seq,
    coercion_note,
    kind_of,
    text_of,
    to_python,
)

Validator = Callable[[Any], Any]


class FieldError(Exception):
    """A value that does not fit its setting. `line` overrides the key's line (list items)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass(frozen=True)
class Kind:
    """A value type: its name in docs and messages, and the conversion from a YAML node."""

    name: str
    convert: Callable[[Node], Any]


# --- kinds -------------------------------------------------------------------------------------


def _scalar(node: Node, expected: str) -> Scalar:
    if not isinstance(node, Scalar):
        raise FieldError(f"expected {expected}, got {kind_of(node)}")
    return node


def _string(node: Node) -> str:
    scalar = _scalar(node, "a string")
    if scalar.value is None and not scalar.quoted:
        raise FieldError("expected a string, got nothing (null)")
    text = text_of(scalar)
    if text is None:
        raise FieldError(coercion_note(scalar) or f"expected a string, got {kind_of(scalar)}")
    return text


def _integer(node: Node) -> int:
    value = _scalar(node, "an integer").value
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(f"expected an integer, got {kind_of(node)}")
    return value


def _number(node: Node) -> float:
    value = _scalar(node, "a number").value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FieldError(f"expected a number, got {kind_of(node)}")
    return float(value)


def _boolean(node: Node) -> bool:
    value = _scalar(node, "true or false").value
    if not isinstance(value, bool):
        raise FieldError(f"expected true or false, got {kind_of(node)}")
    return value


def _string_list(node: Node) -> tuple[str, ...]:
    if not isinstance(node, Seq):
        raise FieldError(f"expected a list of strings, got {kind_of(node)}")
    items: list[str] = []
    for i, item in enumerate(node.items):
        try:
            items.append(_string(item))
        except FieldError as exc:
            raise FieldError(f"item {i + 1}: {exc.message}", item.line) from None
    return tuple(items)


def _argv(node: Node) -> tuple[str, ...]:
    if isinstance(node, Scalar):
        # A string is split like a shell would (no expansion): `command: "uptime -p"`.
        try:
            return tuple(shlex.split(_string(node)))
        except ValueError as exc:
            raise FieldError(f"cannot split into arguments: {exc}") from None
    if isinstance(node, Seq):
        return _string_list(node)
    raise FieldError(f"expected a list of arguments or a string, got {kind_of(node)}")


def _mapping(node: Node) -> Map:
    if not isinstance(node, Map):
        raise FieldError(f"expected a mapping, got {kind_of(node)}")
    return node


def _string_map(node: Node) -> dict[str, str]:
    result: dict[str, str] = {}
    for entry in _mapping(node).entries.values():
        try:
            result[entry.key] = _string(entry.value)
        except FieldError as exc:
            raise FieldError(f"{entry.key}: {exc.message}", entry.key_line) from None
    return result


def _free_mapping(node: Node) -> dict[str, Any]:
    # Free-form (params): any YAML data; keys are kept as written, so `yes:` stays "yes".
    return dict(to_python(_mapping(node)))


def _map_list(node: Node) -> tuple[Map, ...]:
    if not isinstance(node, Seq):
        raise FieldError(f"expected a list of mappings, got {kind_of(node)}")
    for i, item in enumerate(node.items):
        if not isinstance(item, Map):
            raise FieldError(f"item {i + 1}: expected a mapping, got {kind_of(item)}", item.line)
    return tuple(item for item in node.items if isinstance(item, Map))


STRING = Kind("string", _string)
INTEGER = Kind("integer", _integer)
NUMBER = Kind("number", _number)
BOOLEAN = Kind("boolean", _boolean)
STRING_LIST = Kind("list of strings", _string_list)
ARGV = Kind("argv (list or string)", _argv)
STRING_MAP = Kind("mapping of strings", _string_map)
MAPPING = Kind("mapping", _free_mapping)
SECTION = Kind("section", _mapping)
MAP_LIST = Kind("list of sections", _map_list)

# --- validators --------------------------------------------------------------------------------

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_DOTTED_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SIGNALS = ("TERM", "INT", "QUIT", "HUP", "USR1", "USR2")
LOG_LEVELS = ("debug", "info", "warning", "error")
MEMORY_MB_RANGE = (
    16,
    65536,
)  # below 16 MB Python cannot start; above 64 GiB it is bytes by mistake


def name_pattern(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid name: use letters, digits, '_', '.', '-'")
    return value


# A workload's output goes to <log-dir>/NAME.log, rotated to NAME.log.1 ... NAME.log.N. A file
# name may be 255 bytes (NAME_MAX), so past ~245 characters the log cannot be opened and the
# output is lost; 64 stays far inside that with room for every suffix (rotation numbers, the
# per-run names other parts derive from a workload's name) and keeps `list` readable.
WORKLOAD_NAME_MAX = 64


def workload_name(value: str) -> str:
    """A workload's name: also its log file's name, so every name that is not a plain file of
    its own in the log dir is reserved."""
    if is_internal(value):  # @client-api, @heartbeat, ...
        raise ValueError(f"{value!r}: names starting with '@' are reserved for internal services")
    name_pattern(value)
    if len(value) > WORKLOAD_NAME_MAX:
        raise ValueError(
            f"is {len(value)} characters long; at most {WORKLOAD_NAME_MAX} (it names the log "
            "file NAME.log and its rotations)"
        )
    if value[0] in ".-":
        # "." and ".." are directories, ".x" a hidden file, "-rf" reads as an option to every
        # tool an operator points at the log dir.
        raise ValueError(f"{value!r} must not start with '.' or '-'")
    if value == DAEMON_LOG_NAME:
        raise ValueError(f"{value!r} is reserved: {DAEMON_LOG_NAME}.log is the daemon's own log")
    return value


def nice_range(value: int) -> int:
    if not -20 <= value <= 19:
        raise ValueError(f"must be between -20 and 19, got {value}")
    return value


def positive_number(value: float) -> float:
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {value:g}")
    return value


def non_negative(value: float) -> float:
    if value < 0:
        raise ValueError(f"must be 0 or more, got {value:g}")
    return value


def positive_int(value: int) -> int:
    if value < 1:
        raise ValueError(f"must be 1 or more, got {value}")
    return value


def memory_mb(value: int) -> int:
    low, high = MEMORY_MB_RANGE
    if not low <= value <= high:
        raise ValueError(f"must be between {low} and {high} (megabytes), got {value}")
    return value


def log_bytes(value: int) -> int:
    if value < 4096:
        raise ValueError(f"must be at least 4096 (bytes), got {value}")
    return value


def port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"must be a port between 1 and 65535, got {value}")
    return value


def cron_expression(value: str) -> str:
    # The rules (field count, aliases, "never matches") are config/cron.py's, checked by building
    # the schedule the daemon will use; UTC so that validating never reads the local zone.
    return CronSchedule(value, tz="UTC").expr


def module_name(value: str) -> str:
    if not _DOTTED_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a Python module path like 'examples.agents.hello'")
    return value


def identifier(value: str) -> str:
    if not value.isidentifier():
        raise ValueError(f"{value!r} is not a Python name")
    return value


def argv_list(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value or not value[0]:
        raise ValueError("needs at least the program to run")
    return value


def signal_name(value: str) -> str:
    name = value.upper().removeprefix("SIG")
    if name not in SIGNALS:
        raise ValueError(f"expected one of {', '.join(SIGNALS)}, got {value!r}")
    return name


def url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def host(value: str) -> str:
    if not value or any(c.isspace() or c in "/@" for c in value):
        raise ValueError(f"{value!r} is not a host name or address")
    return value


def absolute_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"must be an absolute path, got {value!r}")
    return value


def non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


_ACCOUNT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\$?")  # useradd's rule, or a number


def account(value: str) -> str:
    """A user or group: a name (whether it exists is config/hostcheck.py's question) or an id."""
    if not _ACCOUNT_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a user or group name or number")
    return value


def env_names(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if not _ENV_RE.fullmatch(key):
            raise ValueError(f"{key!r} is not an environment variable name")
    return value


def name_list(value: tuple[str, ...]) -> tuple[str, ...]:
    for item in value:
        name_pattern(item)
    return value


def one_of(enum: type[StrEnum]) -> Validator:
    choices = [m.value for m in enum]

    def check(value: str) -> StrEnum:
        if value not in choices:
            close = difflib.get_close_matches(value, choices, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}{hint}")
        return enum(value)

    return check


def log_level(value: str) -> str:
    if value.lower() not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return value.lower()


def is_loopback(address: str) -> bool:
    """Whether a listener on `address` is reachable only from this machine."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
