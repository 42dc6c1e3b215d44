"""Schemathesis against the live central API: a real Waitress server on 127.0.0.1 (a free
port) over a real fleet DB, every operation of docs/openapi/central.yaml fuzzed a bounded
number of times; every answer must conform to the document and none may be a 5xx."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from mastercontrol.api.central_app import Central, create_central_app
from mastercontrol.api.central_heartbeat import with_heartbeat_fast_path
from mastercontrol.api.server import make_server
from mastercontrol.fleet.coalescer import Coalescer
from mastercontrol.fleet.fleetstore import SqliteFleetStore
from mastercontrol.fleet.intake import parse_heartbeat
from mastercontrol.fleet.liveness import LivenessRule
from mastercontrol.fleet.roster import Roster, RosterEntry

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi" / "central.yaml"
OPERATOR = "schemathesis-operator-token"


@pytest.fixture(scope="module")
def live_central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import time

    store = SqliteFleetStore(tmp_path_factory.mktemp("central") / "fleet.db")
    entries = [RosterEntry("pi-01", "127.0.0.1", token="tok-1")]
    rule = LivenessRule(stale_after=90, offline_after=300, started_at=time.monotonic())
    coalescer = Coalescer(store, rule)
    coalescer.set_inventory(entries)
    # A known client whose API is a closed port: remote control answers 502, never 5xx else.
    coalescer.ingest(
        parse_heartbeat(
            {"client_name": "pi-01", "sent_at": time.time(), "api_url": "http://127.0.0.1:9",
             "workloads": [{"name": "w", "state": "FATAL"}]}
        )
    )  # fmt: skip
    coalescer.flush()
    store.create_deployment({"release": "r1"}, time.time())
    central = Central(
        coalescer=coalescer, store=store, roster=Roster(entries, OPERATOR),
        operator_token=OPERATOR, client_timeout=1.0,
    )  # fmt: skip
    server = make_server(
        with_heartbeat_fast_path(create_central_app(central), central), "127.0.0.1", 0
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(timeout=10)
        store.close()


schema = schemathesis.openapi.from_path(SPEC)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_conforms_and_none_is_a_5xx(case: Any, live_central: str) -> None:
    token = "tok-1" if case.path == "/api/v1/heartbeat" else OPERATOR
    # Not negative_data_rejection: unknown query parameters are ignored (as by every route of
    # the client API), which that check counts as accepting a schema-violating request.
    case.call_and_validate(
        base_url=live_central,
        headers={"Authorization": f"Bearer {token}"},
        excluded_checks=[schemathesis.checks.negative_data_rejection],
    )
