"""Read YAML text into a tree of nodes that remember their line, and nothing more.

PyYAML's `safe_load` forgets where each value came from and silently keeps the last of two
duplicate keys. Here the text is only *composed* (never constructed as a whole): every mapping
is checked for duplicate keys, every tag must be one of YAML's plain data tags (so
`!!python/object/apply:...` is reported and never built), and each scalar keeps its raw text so
that a value YAML coerced (`1.10` -> 1.1, `12:30` -> 750, `no` -> False) can be reported with the
text the user wrote. Imports only the standard library and yaml; knows nothing of the schema.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

import yaml

_TAG_PREFIX = "tag:yaml.org,2002:"
# The tags plain data may carry. Everything else (python/*, binary, set, omap, custom `!foo`)
# is refused: a config file is data, and the safe constructors are the only ones ever called.
SAFE_SCALAR_TAGS = frozenset(
    _TAG_PREFIX + t for t in ("str", "int", "float", "bool", "null", "timestamp")
)
_MAP_TAG = _TAG_PREFIX + "map"
_SEQ_TAG = _TAG_PREFIX + "seq"
_MERGE_TAG = _TAG_PREFIX + "merge"


@dataclass(frozen=True)
class Problem:
    """One finding, located. `field` is a dotted path (`health_check.tcp`) or "" for the file."""

    line: int  # 1-based
    field: str
    message: str
    column: int = 0  # 1-based; 0 = not meaningful (the message is about a key)


@dataclass(frozen=True)
class Scalar:
    value: Any  # what YAML's safe constructor made of it
    text: str  # the characters as written (without quotes)
    quoted: bool  # written with quotes or as a block scalar: always a string
    line: int
    column: int


@dataclass(frozen=True)
class Seq:
    items: tuple[Node, ...]
    line: int
    column: int


@dataclass(frozen=True)
class Entry:
    key: str  # the key as written
    key_line: int
    value: Node


@dataclass(frozen=True)
class Map:
    entries: dict[str, Entry] = field(default_factory=dict)  # first occurrence of each key wins
    line: int = 1
    column: int = 1

    @property
    def first_line(self) -> int:
        """Where a problem about a missing key is reported: the mapping's first key."""
        for entry in self.entries.values():
            return entry.key_line
        return self.line


Node = Scalar | Seq | Map


def kind_of(node: Node) -> str:
    """A short noun for messages: 'a list', 'a mapping', 'the number 3', ..."""
    if isinstance(node, Map):
        return "a mapping"
    if isinstance(node, Seq):
        return "a list"
    value = node.value
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {node.text}"
    if isinstance(value, datetime.date):
        return f"the date {node.text}"
    return repr(value)


def coercion_note(node: Scalar) -> str | None:
    """If an unquoted scalar did not stay the text it was written as, say what YAML made of it.

    Plain integers written the normal way (`2`, `8080`) are not surprising and return None: their
    text is exactly the value, so a string field can take the text.
    """
    if node.quoted or isinstance(node.value, str):
        return None
    value, text = node.value, node.text
    if isinstance(value, bool):
        made = f"the boolean {str(value).lower()}"
    elif isinstance(value, int):
        if text == str(value):
            return None
        made = f"the number {value}"
        if ":" in text:
            made += " (base 60)"
        elif text.lstrip("+-").startswith("0"):
            made += " (octal or hex)"
    elif isinstance(value, float):
        made = "a number, not text" if repr(value) == text else f"the number {value!r}"
    elif isinstance(value, datetime.date):
        made = "a date"
    elif value is None:
        made = "null (no value)"
    else:  # pragma: no cover - only the tags above reach here
        made = type(value).__name__
    return f'YAML reads {text or "an empty value"} as {made}; quote it: "{text}"'


def text_of(node: Scalar) -> str | None:
    """The string a string-typed field gets from this scalar, or None if YAML changed it."""
    if isinstance(node.value, str):
        return node.value
    if coercion_note(node) is None and isinstance(node.value, int) and not node.quoted:
        return node.text
    return None


def to_python(node: Node) -> Any:
    """Plain Python data (dicts, lists, scalars) for free-form values such as `params`."""
    if isinstance(node, Map):
        return {entry.key: to_python(entry.value) for entry in node.entries.values()}
    if isinstance(node, Seq):
        return [to_python(item) for item in node.items]
    return node.value


def parse(text: str, max_values: int | None = None) -> tuple[Node | None, list[Problem]]:
    """Compose `text`; return its root node (None if empty or unusable) and the problems found.

    `max_values` (default MAX_VALUES) bounds the values of the expanded document; only
    inventory.yaml, which lists a whole fleet, asks for more.

    A syntax error, a refused tag or a duplicate key makes the document unusable for loading;
    the caller rejects the file when the problem list is not empty.
    """
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 0)
        what = exc.problem or exc.context or "unreadable"
        if exc.problem and exc.context and exc.problem.startswith("but "):
            what = f"{exc.context} {exc.problem}"  # "expected a single document ... but found"
        elif exc.problem and exc.context:  # e.g. "while parsing a flow sequence" + its start
            where = f" started at line {exc.context_mark.line + 1}" if exc.context_mark else ""
            what = f"{exc.problem} ({exc.context}{where})"
        return None, [Problem(line, "", f"YAML syntax error: {what}", column)]
    except yaml.YAMLError as exc:  # e.g. a reader error on a control character
        return None, [Problem(1, "", f"YAML error: {exc}".replace("\n", " "))]
    finally:
        loader.dispose()
    if root is None:
        return None, []
    problems: list[Problem] = []
    try:
        node = _convert(root, "", _Constructor(max_values or MAX_VALUES), problems)
    except _Unusable as exc:
        return None, [exc.problem]
    return node, problems


MAX_VALUES = 10_000  # far above any real config; stops alias bombs ("billion laughs")
# inventory.yaml: ~10 values per client, so room for 100,000 clients (issue 10 targets 50,000);
# still a bound, so an alias bomb stops here too.
MAX_INVENTORY_VALUES = 1_000_000


class _Unusable(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


class _Constructor(yaml.SafeLoader):
    """Builds scalars whose tag was checked first, and guards the walk over shared nodes.

    Aliases make the composed document a graph: a node may be reached many times (expanded
    here into a tree, so counted) or contain itself (a cycle, refused).
    """

    def __init__(self, max_values: int) -> None:
        super().__init__("")
        self.max_values = max_values
        self.values = 0
        self.open: set[int] = set()

    def enter(self, node: yaml.Node) -> None:
        self.values += 1
        if self.values > self.max_values:
            msg = f"too many values (over {self.max_values}, aliases included)"
            raise _Unusable(Problem(_line(node), "", msg))
        if id(node) in self.open:
            raise _Unusable(Problem(_line(node), "", "an alias refers to its own anchor"))
        self.open.add(id(node))


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _column(node: yaml.Node) -> int:
    return int(node.start_mark.column) + 1


def _convert(node: yaml.Node, path: str, ctor: _Constructor, problems: list[Problem]) -> Node:
    ctor.enter(node)
    try:
        return _convert_node(node, path, ctor, problems)
    finally:
        ctor.open.discard(id(node))


def _convert_node(node: yaml.Node, path: str, ctor: _Constructor, problems: list[Problem]) -> Node:
    if isinstance(node, yaml.MappingNode):
        return _convert_map(node, path, ctor, problems)
    if isinstance(node, yaml.SequenceNode):
        if node.tag != _SEQ_TAG:
            problems.append(_refused(node, path))
        items = tuple(
            _convert(item, f"{path}[{i}]", ctor, problems) for i, item in enumerate(node.value)
        )
        return Seq(items, _line(node), _column(node))
    assert isinstance(node, yaml.ScalarNode)
    if node.tag not in SAFE_SCALAR_TAGS:
        problems.append(_refused(node, path))
        return Scalar(node.value, node.value, True, _line(node), _column(node))
    try:
        value = ctor.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError) as exc:  # e.g. `!!int abc`, `!!timestamp 2024-13-45`
        message = str(exc).splitlines()[0] if str(exc) else "unreadable value"
        problems.append(Problem(_line(node), path, f"bad value {node.value!r}: {message}"))
        value = node.value
    quoted = node.style is not None  # '', "", |, >: the user asked for a string
    return Scalar(value, node.value, quoted, _line(node), _column(node))


def _convert_map(
    node: yaml.MappingNode, path: str, ctor: _Constructor, problems: list[Problem]
) -> Map:
    if node.tag != _MAP_TAG:
        problems.append(_refused(node, path))
    entries: dict[str, Entry] = {}
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE_TAG:
            # Merge keys would need their own duplicate rules; one file per workload has no
            # use for them, so they are refused plainly rather than half supported.
            problems.append(
                Problem(_line(key_node), path, "merge keys (<<) are not supported; write it out")
            )
            continue
        if not isinstance(key_node, yaml.ScalarNode):
            problems.append(Problem(_line(key_node), path, "a key must be a plain name"))
            continue
        key = str(key_node.value)
        child_path = f"{path}.{key}" if path else key
        if key_node.tag not in SAFE_SCALAR_TAGS:
            problems.append(_refused(key_node, child_path))
            continue
        if key in entries:
            first = entries[key].key_line
            problems.append(
                Problem(_line(key_node), child_path, f"duplicate key (first at line {first})")
            )
            continue
        value = _convert(value_node, child_path, ctor, problems)
        entries[key] = Entry(key, _line(key_node), value)
    return Map(entries, _line(node), _column(node))


def _refused(node: yaml.Node, path: str) -> Problem:
    tag = str(node.tag)
    shown = "!!" + tag[len(_TAG_PREFIX) :] if tag.startswith(_TAG_PREFIX) else tag
    return Problem(
        _line(node), path, f"tag {shown} is not allowed: only plain YAML data (never constructed)"
    )
