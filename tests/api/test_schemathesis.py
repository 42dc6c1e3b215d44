"""Schemathesis against the LIVE client API (client_service.main under Waitress on 127.0.0.1,
a real daemon behind it): every generated request gets a response that conforms to
docs/openapi/client.yaml, and none is a 5xx. Bounded: a few dozen examples per operation, no
shrinking beyond Hypothesis's defaults, no deadline (the machine is shared)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.api.conftest import TOKEN
from tests.api.service import ApiService, free_port, write_daemon_yaml
from tests.integration.harness import Daemon

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiService]:
    daemon = Daemon(Path(tmp_path_factory.mktemp("schemathesis")))
    service = ApiService(daemon)
    try:
        port = free_port()
        write_daemon_yaml(daemon, {"api_port": port, "api_token": TOKEN})
        daemon.workload("svc", "sleep_forever")
        daemon.start()
        service.start(port)
        yield service
    finally:
        service.stop()
        daemon.cleanup()


@pytest.fixture(scope="module")
def api_schema(live_api: ApiService) -> schemathesis.BaseSchema:
    url = f"http://127.0.0.1:{live_api.port}/api/v1/openapi.yaml"
    return schemathesis.openapi.from_url(url, headers=AUTH, timeout=30)


# Schemathesis's pytest plugin (from_fixture/parametrize) does not work with pytest 9
# ('Function' object has no attribute '_nodeid'), so each operation's Hypothesis strategy
# is driven by hand: one test per operation and generation mode, labels read from the spec.
SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi" / "client.yaml"
POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE


def _cases() -> list[tuple[str, schemathesis.GenerationMode]]:
    """Every operation in both modes, except negative for an operation with nothing to get
    wrong (no parameters, no body, no token): Hypothesis finds no such input at all."""
    spec = yaml.safe_load(SPEC.read_text())
    cases = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            label = f"{method.upper()} {path}"
            cases.append((label, POSITIVE))
            if op.get("parameters") or op.get("requestBody") or op.get("security") != []:
                cases.append((label, NEGATIVE))
    return cases


# A config push whose files are well-formed but whose YAML is not a valid workload is a 422:
# "schema-valid" for OpenAPI, invalid for the validator. That check cannot hold there.
EXCLUDED: dict[str, list[schemathesis.CheckFunction]] = {
    "PUT /api/v1/config": [positive_data_acceptance]
}


@pytest.mark.parametrize(("label", "mode"), _cases(), ids=lambda v: getattr(v, "value", v))
def test_every_response_conforms_and_none_is_a_5xx(
    api_schema: schemathesis.BaseSchema, label: str, mode: schemathesis.GenerationMode
) -> None:
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, label

    @settings(
        max_examples=15,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(headers=AUTH, timeout=30, excluded_checks=EXCLUDED.get(label))

    check()
