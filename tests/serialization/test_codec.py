"""Encoding payloads by type and decoding bodies by handler annotation."""

from __future__ import annotations

import contextlib
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventwire.core.errors import ConfigurationError, DecodeError, MessageError, ValidationError
from eventwire.core.message import Message
from eventwire.serialization.codec import decoder_for, encode_payload


class Order(pydantic.BaseModel):
    order_id: str
    amount: int


def msg(body: bytes) -> Message:
    return Message(body=body)


def test_encode_by_type() -> None:
    assert encode_payload(Order(order_id="a", amount=1)) == (
        b'{"order_id":"a","amount":1}',
        "application/json",
    )
    assert encode_payload({"a": 1}) == (b'{"a":1}', "application/json")
    assert encode_payload([1, 2]) == (b"[1,2]", "application/json")
    assert encode_payload(b"\x00\xff") == (b"\x00\xff", "application/octet-stream")
    assert encode_payload(bytearray(b"ab"))[0] == b"ab"
    assert encode_payload("héllo") == ("héllo".encode(), "text/plain; charset=utf-8")


def test_encode_refuses_unknown_types() -> None:
    with pytest.raises(MessageError, match="cannot publish a int"):
        encode_payload(3)
    with pytest.raises(MessageError, match="not JSON-serializable"):
        encode_payload({"a": object()})


def test_decode_by_annotation() -> None:
    body = b'{"order_id":"a","amount":1}'
    assert decoder_for(Order)(msg(body)) == Order(order_id="a", amount=1)
    assert decoder_for(dict)(msg(body)) == {"order_id": "a", "amount": 1}
    assert decoder_for(Any)(msg(b"[1]")) == [1]
    assert decoder_for()(msg(b"3")) == 3
    assert decoder_for(list)(msg(b"[1]")) == [1]
    assert decoder_for(bytes)(msg(b"\xff")) == b"\xff"
    assert decoder_for(str)(msg("é".encode())) == "é"
    m = msg(b"raw")
    assert decoder_for(Message)(m) is m
    assert decoder_for(list[int])(msg(b"[1,2]")) == [1, 2]
    assert decoder_for(dict[str, int])(msg(b'{"x":1,"y":2}')) == {"x": 1, "y": 2}


@pytest.mark.parametrize(
    ("annotation", "body", "error"),
    [
        (Order, b"\xff\xfe", DecodeError),
        (Order, b'{"order_id":', DecodeError),
        (Order, b"", DecodeError),
        (Order, b"[1]", ValidationError),
        (Order, b'{"order_id":"a","amount":"x"}', ValidationError),
        (dict, b"[1]", ValidationError),
        (list, b"{}", ValidationError),
        (dict, b"nope", DecodeError),
        (str, b"\xff", DecodeError),
        (list[int], b'["a"]', ValidationError),
        (list[int], b"[", DecodeError),
    ],
)
def test_decode_failures_are_classified(annotation: Any, body: bytes, error: type) -> None:
    with pytest.raises(error) as info:
        decoder_for(annotation)(msg(body))
    assert type(info.value) is error
    assert isinstance(info.value, DecodeError)
    assert info.value.reason in {"decode-error", "validation-error"}


def test_unsupported_annotation_is_a_configuration_error() -> None:
    class Opaque:
        pass

    with pytest.raises(ConfigurationError, match="cannot decode messages into"):
        decoder_for(Opaque)


@settings(deadline=None)  # shared CI cores: a slow example is not a failure
@given(st.binary(max_size=512))
def test_any_bytes_either_decode_or_raise_decode_error(body: bytes) -> None:
    for annotation in (Order, dict, Any, str, list[int]):
        with contextlib.suppress(DecodeError):
            decoder_for(annotation)(msg(body))
