"""The line-tracking YAML reader: safe tags only, duplicate keys, coercions, syntax errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mastercontrol.config.load import load_config_dir, load_config_files
from mastercontrol.config.yamlsource import Map, Problem, Scalar, Seq, coercion_note, parse


def test_python_tag_is_rejected_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "evil.yaml").write_text(
        f"name: !!python/object/apply:os.system ['touch {marker}']\n"
        "type: script\nmax_runs: 1\nmodule: m\n"
        f"params: {{x: !!python/object/apply:os.system ['touch {marker}']}}\n"
    )
    configs = load_config_dir(tmp_path)
    assert configs.workloads == {}
    assert configs.problems == [
        f"{tmp_path}/evil.yaml:1: name: tag !!python/object/apply:os.system is not allowed: "
        "only plain YAML data (never constructed)",
        f"{tmp_path}/evil.yaml:5: params.x: tag !!python/object/apply:os.system is not allowed: "
        "only plain YAML data (never constructed)",
    ]
    assert not marker.exists()


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("x: !!binary aGVsbG8=", "!!binary"),
        ("x: !!set {a: null}", "!!set"),
        ("x: !custom 1", "!custom"),
        ("x: !!python/name:os.system ''", "!!python/name:os.system"),
    ],
)
def test_non_data_tags_are_refused(text: str, shown: str) -> None:
    _, problems = parse(text)
    assert problems == [
        Problem(1, "x", f"tag {shown} is not allowed: only plain YAML data (never constructed)")
    ]


def test_duplicate_keys_are_found_in_nested_mappings() -> None:
    _, problems = parse("a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\na: 2\n")
    assert problems == [
        Problem(5, "b.c", "duplicate key (first at line 3)"),
        Problem(6, "a", "duplicate key (first at line 1)"),
    ]


def test_nodes_remember_lines_and_raw_text() -> None:
    node, problems = parse("# comment\nname: x\nlist:\n  - 1.10\n  - 'quoted'\n")
    assert problems == []
    assert isinstance(node, Map)
    assert node.first_line == 2
    items = node.entries["list"].value
    assert isinstance(items, Seq)
    first, second = items.items
    assert isinstance(first, Scalar) and isinstance(second, Scalar)
    assert (first.value, first.text, first.quoted, first.line) == (1.1, "1.10", False, 4)
    assert (second.value, second.quoted) == ("quoted", True)


@pytest.mark.parametrize(
    ("raw", "note"),
    [
        ("1.10", 'YAML reads 1.10 as the number 1.1; quote it: "1.10"'),
        ("1.0", 'YAML reads 1.0 as a number, not text; quote it: "1.0"'),
        ("12:30", 'YAML reads 12:30 as the number 750 (base 60); quote it: "12:30"'),
        ("0755", 'YAML reads 0755 as the number 493 (octal or hex); quote it: "0755"'),
        ("no", 'YAML reads no as the boolean false; quote it: "no"'),
        ("On", 'YAML reads On as the boolean true; quote it: "On"'),
        ("2024-01-01", 'YAML reads 2024-01-01 as a date; quote it: "2024-01-01"'),
        ("1_000", 'YAML reads 1_000 as the number 1000; quote it: "1_000"'),
        ("42", None),
        ("'1.10'", None),
        ("hello", None),
    ],
)
def test_coercion_note_uses_the_text_as_written(raw: str, note: str | None) -> None:
    node, _ = parse(f"v: {raw}\n")
    assert isinstance(node, Map)
    value = node.entries["v"].value
    assert isinstance(value, Scalar)
    assert coercion_note(value) == note


def test_syntax_error_has_line_and_column() -> None:
    _, problems = parse("name: x\n  type: agent\n")
    assert len(problems) == 1
    assert (problems[0].line, problems[0].column) == (2, 7)
    assert problems[0].message.startswith("YAML syntax error: mapping values are not allowed")


def test_tab_indentation_is_a_syntax_error_not_a_crash() -> None:
    problems = load_config_files({"t.yaml": "name: x\n\ttype: agent\n"}).problems
    assert len(problems) == 1
    assert problems[0].startswith("t.yaml:2:1: YAML syntax error:")


def test_two_documents_are_refused() -> None:
    problems = load_config_files({"two.yaml": "name: a\n---\nname: b\n"}).problems
    assert problems == [
        "two.yaml:2:1: YAML syntax error: "
        "expected a single document in the stream but found another document"
    ]


def test_merge_keys_are_refused() -> None:
    _, problems = parse("base: &b {type: script}\n<<: *b\n")
    assert problems == [Problem(2, "", "merge keys (<<) are not supported; write it out")]


def test_anchors_and_aliases_are_plain_data() -> None:
    node, problems = parse("a: &x [1, 2]\nb: *x\n")
    assert problems == []
    assert isinstance(node, Map)
    assert isinstance(node.entries["b"].value, Seq)


def test_invalid_explicit_value_is_a_problem() -> None:
    _, problems = parse("when: !!timestamp 2024-13-45\n")
    assert len(problems) == 1
    assert problems[0].line == 1 and problems[0].field == "when"


def test_empty_text_is_no_document() -> None:
    assert parse("") == (None, [])
    assert parse("# just a comment\n") == (None, [])


def test_recursive_alias_is_refused_not_a_crash() -> None:
    assert parse("a: &x [1, *x]\n") == (
        None,
        [Problem(1, "", "an alias refers to its own anchor")],
    )


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    node, problems = parse("\n".join(lines) + "\n")
    assert node is None
    assert [p.message for p in problems] == ["too many values (over 10000, aliases included)"]
