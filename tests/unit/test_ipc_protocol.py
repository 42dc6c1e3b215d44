"""The IPC wire format (mastercontrol.ipc.protocol): round trips, malformed and deeply nested
input, and replies a client cannot decode. Pure functions, no sockets."""

from __future__ import annotations

import json
import signal

import pytest

from mastercontrol.errors import IPCError
from mastercontrol.ipc.protocol import (
    MAX_JSON_DEPTH,
    ErrorCode,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
    parse_signal,
)


def nested(depth: int) -> bytes:
    """A request whose args nest `depth` levels deep in total (the request object is level 1)."""
    inner = "[" * (depth - 2) + "]" * (depth - 2)
    return f'{{"cmd": "status", "args": {{"name": {inner}}}}}'.encode()


def test_a_request_round_trips() -> None:
    line = encode_request("logs", {"name": "svc", "lines": 5})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_request(line) == ("logs", {"name": "svc", "lines": 5})
    assert decode_request(encode_request("ping")) == ("ping", {})


def test_a_result_and_an_error_round_trip() -> None:
    assert decode_reply(encode_reply({"pid": 4242})) == {"pid": 4242}
    err = IPCError(ErrorCode.INVALID_CONFIG, "rejected", details={"problems": ["a.yaml:1: x"]})
    with pytest.raises(IPCError) as info:
        decode_reply(encode_reply(error=err))
    assert info.value.code is ErrorCode.INVALID_CONFIG
    assert str(info.value) == "rejected"
    assert info.value.details == {"problems": ["a.yaml:1: x"]}


def test_the_wire_carries_the_plain_code_string() -> None:
    body = json.loads(encode_reply(error=IPCError(ErrorCode.BUSY, "full")))
    assert body == {"ok": False, "error": {"code": "busy", "message": "full"}}


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"not json", ErrorCode.BAD_JSON),
        (b"\xff\xfe\x00", ErrorCode.BAD_JSON),
        (b"[1, 2]", ErrorCode.BAD_REQUEST),
        (b'{"args": {}}', ErrorCode.BAD_REQUEST),
        (b'{"cmd": ""}', ErrorCode.BAD_REQUEST),
        (b'{"cmd": "ping", "args": [1]}', ErrorCode.BAD_REQUEST),
    ],
)
def test_malformed_requests_get_their_code(line: bytes, code: ErrorCode) -> None:
    with pytest.raises(IPCError) as info:
        decode_request(line)
    assert info.value.code is code


def test_nesting_up_to_the_limit_is_accepted() -> None:
    assert decode_request(nested(MAX_JSON_DEPTH))[0] == "status"


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5000, 200_000])
def test_deeper_nesting_is_a_bad_request(depth: int) -> None:
    # 5000 and 200 000 levels make json.loads itself raise RecursionError: still bad_request.
    with pytest.raises(IPCError) as info:
        decode_request(nested(depth))
    assert info.value.code is ErrorCode.BAD_REQUEST
    assert "nests deeper" in str(info.value)


def test_a_bare_deep_list_is_a_bad_request_too() -> None:
    with pytest.raises(IPCError) as info:
        decode_request(b"[" * 100_000)
    assert info.value.code is ErrorCode.BAD_REQUEST


@pytest.mark.parametrize(
    "line",
    [
        b"garbage",
        b"[]",
        b'{"result": 1}',
        b'{"ok": "yes"}',
        b'{"ok": false}',
        b'{"ok": false, "error": {"message": "no code"}}',
        b"[" * 100_000,
    ],
)
def test_undecodable_replies_are_bad_reply(line: bytes) -> None:
    with pytest.raises(IPCError) as info:
        decode_reply(line)
    assert info.value.code is ErrorCode.BAD_REPLY


def test_a_code_this_client_does_not_know_is_kept_as_sent() -> None:
    with pytest.raises(IPCError) as info:
        decode_reply(b'{"ok": false, "error": {"code": "from_the_future", "message": "m"}}')
    assert info.value.code == "from_the_future"


@pytest.mark.parametrize("value", ["HUP", "hup", "SIGHUP", "sighup", " HUP ", "1", 1])
def test_parse_signal_takes_names_and_numbers(value: object) -> None:
    assert parse_signal(value) is signal.SIGHUP


@pytest.mark.parametrize("value", ["NOPE", "SIG", "", "0", 0, "-1", "999", True, None, 1.0, []])
def test_parse_signal_refuses_anything_else(value: object) -> None:
    with pytest.raises(ValueError):
        parse_signal(value)
