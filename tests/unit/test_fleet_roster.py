"""Heartbeat auth by client name and token, and where the central may call a client."""

from __future__ import annotations

import pytest

from mastercontrol.fleet.roster import Roster, RosterEntry, Verdict

ENTRIES = [
    RosterEntry("pi-01", "10.0.0.1", token="tok-one"),
    RosterEntry("pi-02", "pi-02.lan", token="tok-two"),
    RosterEntry("pi-03", "10.0.0.3"),  # no own token: the shared one
    RosterEntry("pi-04", "10.0.0.4", api_url="https://pi4.example:9443/"),
]
ROSTER = Roster(ENTRIES, shared_token="operator")


@pytest.mark.parametrize(
    ("name", "token", "verdict"),
    [
        ("pi-01", "tok-one", Verdict.OK),
        ("pi-03", "operator", Verdict.OK),
        ("pi-01", "nope", Verdict.UNKNOWN_TOKEN),
        ("pi-01", None, Verdict.UNKNOWN_TOKEN),
        ("pi-01", "", Verdict.UNKNOWN_TOKEN),
        ("stranger", "nope", Verdict.UNKNOWN_TOKEN),
        ("pi-01", "tok-two", Verdict.WRONG_CLIENT),
        ("pi-01", "operator", Verdict.WRONG_CLIENT),  # pi-01 has its own token
        ("pi-03", "tok-one", Verdict.WRONG_CLIENT),
        ("stranger", "tok-one", Verdict.UNLISTED),
        ("stranger", "operator", Verdict.UNLISTED),
        ("pi-01", "tök-one\udcff", Verdict.UNKNOWN_TOKEN),
    ],
)
def test_heartbeat_verdicts(name: str, token: str | None, verdict: Verdict) -> None:
    assert ROSTER.check_heartbeat(name, token) == verdict


def test_unknown_clients_may_use_the_shared_token_when_accepted() -> None:
    roster = Roster(ENTRIES, shared_token="operator", accept_unknown=True)
    assert roster.check_heartbeat("stranger", "operator") == Verdict.OK
    assert roster.check_heartbeat("stranger", "tok-one") == Verdict.WRONG_CLIENT
    # ... but the central never calls a client it has no inventory entry for.
    assert roster.target_url("stranger", "http://127.0.0.1:9100") is None


def test_without_a_shared_token_a_tokenless_entry_cannot_heartbeat() -> None:
    roster = Roster(ENTRIES, shared_token=None)
    assert roster.check_heartbeat("pi-03", "anything") == Verdict.UNKNOWN_TOKEN


def test_the_inventory_url_wins_over_the_heartbeat_url() -> None:
    assert ROSTER.target_url("pi-04", "http://10.0.0.4:9100") == "https://pi4.example:9443"


def test_a_heartbeat_url_is_used_only_on_the_inventory_host() -> None:
    assert ROSTER.target_url("pi-01", "http://10.0.0.1:9100/") == "http://10.0.0.1:9100"
    assert ROSTER.target_url("pi-02", "http://PI-02.lan:9100") == "http://PI-02.lan:9100"
    assert ROSTER.target_url("pi-01", "http://169.254.169.254/latest") is None
    assert ROSTER.target_url("pi-01", "http://10.0.0.1.evil.example:9100") is None
    assert ROSTER.target_url("pi-01", "http://user@10.0.0.2:9100") is None
    assert ROSTER.target_url("pi-01", None) is None


def test_the_call_token_is_the_clients_own() -> None:
    assert ROSTER.call_token("pi-02") == "tok-two"
    assert ROSTER.call_token("pi-03") == "operator"
    assert ROSTER.call_token("stranger") is None
    assert "tok-one" not in repr(ENTRIES[0])
