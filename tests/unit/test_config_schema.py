"""The settings tables match the model, and docs/configuration.md is generated from them."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from mastercontrol.config import checks, model, schema
from mastercontrol.config.docgen import render_configuration_markdown
from mastercontrol.config.load import load_config_files

REPO = Path(__file__).resolve().parents[2]
LOCATION_FIELDS = {"source", "source_line"}

TABLES = [
    (schema.WORKLOAD, model.WorkloadConfig),
    (schema.HEALTH_CHECK, model.HealthCheck),
    (schema.DAEMON, model.DaemonSettings),
    (schema.FLEET, model.FleetSettings),
    (schema.CENTRAL, model.CentralSettings),
    (schema.INVENTORY_CLIENT, model.InventoryClient),
]


def model_default(f: dataclasses.Field[object]) -> object:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


@pytest.mark.parametrize(("table", "cls"), TABLES, ids=lambda x: getattr(x, "__name__", ""))
def test_table_has_exactly_the_model_fields_with_the_same_defaults(
    table: tuple[schema.Setting, ...], cls: type
) -> None:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in LOCATION_FIELDS}
    assert sorted(s.name for s in table) == sorted(fields)
    for setting in table:
        expected = model_default(fields[setting.name])
        if setting.name == "run_mode":
            continue  # chosen by type (DEFAULT_RUN_MODE)
        assert setting.default == expected, setting.name
        assert setting.help.strip(), setting.name


def test_a_default_is_written_once_in_the_model_and_read_by_the_table() -> None:
    @dataclasses.dataclass(frozen=True)
    class Settings:
        port: int = 9100
        token: str | None = None

    kind = checks.INTEGER
    bound = schema._bound(
        Settings,
        (
            schema.Setting("port", kind, schema.MODEL, None, "p"),
            schema.Setting("token", checks.STRING, None, None, "t"),
        ),
    )
    assert [s.default for s in bound] == [9100, None]
    for row, message in [
        (schema.Setting("port", kind, 9100, None, "a second copy"), "write MODEL"),
        (schema.Setting("port", kind, None, None, "None where the model has 9100"), "write MODEL"),
        (schema.Setting("nope", kind, schema.MODEL, None, "no such field"), "no field"),
    ]:
        with pytest.raises(TypeError, match=message):
            schema._bound(Settings, (row,))


def test_backoff_defaults_are_the_workload_defaults() -> None:
    from mastercontrol.engine.backoff import Backoff

    config = model.WorkloadConfig("w", model.WorkloadType.SERVICE, model.RunMode.FOREVER)
    assert Backoff() == Backoff.from_config(config)


def test_committed_configuration_docs_are_generated_from_the_tables() -> None:
    committed = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == render_configuration_markdown(), (
        "docs/configuration.md is stale: run "
        "`.venv/bin/python -m mastercontrol.config.docgen > docs/configuration.md`"
    )


def test_docs_mention_every_setting() -> None:
    text = render_configuration_markdown()
    for table, _ in TABLES:
        for setting in table:
            assert f"{setting.name}` |" in text, setting.name


def test_workload_examples_in_the_docs_are_valid() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", render_configuration_markdown(), re.S)
    assert len(blocks) == 2
    configs = load_config_files({f"doc{i}.yaml": b for i, b in enumerate(blocks)})
    assert configs.problems == []
    assert set(configs.workloads) == {"data_collector", "web"}


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("*/5 * * * *", True),
        ("0  12 * * 1-5", True),
        ("@hourly", True),
        ("61 * * * *", False),
        ("* * * *", False),
        ("* * * * * */10", True),  # sixth field: seconds
        ("* * * * * 61", False),
        ("* * * * * * 2030", False),  # no years
        ("0 0 30 2 *", False),  # valid fields, but February 30th never comes
        ("every minute", False),
    ],
)
def test_cron_expression(value: str, ok: bool) -> None:
    if ok:
        assert checks.cron_expression(value) == " ".join(value.split())
    else:
        with pytest.raises(ValueError):
            checks.cron_expression(value)


@pytest.mark.parametrize(
    ("address", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False), ("pi", False)],
)
def test_is_loopback(address: str, loopback: bool) -> None:
    assert checks.is_loopback(address) is loopback
