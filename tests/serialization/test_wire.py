"""The Confluent wire format: framing, the Protobuf message-index array, hostile headers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventwire.core.errors import DecodeError
from eventwire.serialization import wire


def test_frame_layout_is_magic_id_payload() -> None:
    assert wire.frame(258, b"xy") == b"\x00\x00\x00\x01\x02xy"
    assert wire.unframe(b"\x00\x00\x00\x01\x02xy")[0] == 258
    assert bytes(wire.unframe(b"\x00\x00\x00\x01\x02xy")[1]) == b"xy"


def test_protobuf_indexes_match_confluent_encoding() -> None:
    # [0] is one zero byte; otherwise zigzag count then zigzag entries (1 -> 2, 2 -> 4).
    assert wire.encode_indexes([0]) == b"\x00"
    assert wire.encode_indexes([1]) == b"\x02\x02"
    assert wire.encode_indexes([1, 0]) == b"\x04\x02\x00"
    assert wire.frame(7, b"p", indexes=[1]) == b"\x00\x00\x00\x00\x07\x02\x02p"


@given(st.lists(st.integers(0, 2**31), min_size=1, max_size=wire.MAX_INDEX_DEPTH))
def test_indexes_round_trip(indexes: list[int]) -> None:
    encoded = wire.encode_indexes(indexes)
    assert wire.decode_indexes(encoded + b"rest") == (indexes, len(encoded))


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "shorter than"),
        (b"\x00\x00\x01", "shorter than"),
        (b"\x01\x00\x00\x00\x01payload", "magic byte 0x01"),
        (b'{"json": true}', "magic byte 0x7b"),
    ],
)
def test_not_the_wire_format(body: bytes, says: str) -> None:
    with pytest.raises(DecodeError, match=says):
        wire.unframe(body)


@pytest.mark.parametrize(
    "header",
    [b"\x80", b"\xff" * 11, b"\x7e", b"\x01", b"\x04\x01\x00", b"\x02"],
    ids=["cut-varint", "endless-varint", "huge-count", "negative-count", "negative-index", "short"],
)
def test_hostile_index_headers_are_decode_errors(header: bytes) -> None:
    with pytest.raises(DecodeError):
        wire.unframe_protobuf(b"\x00\x00\x00\x00\x01" + header)


@given(st.binary(max_size=64))
def test_any_bytes_unframe_or_decode_error(body: bytes) -> None:
    try:
        schema_id, indexes, payload = wire.unframe_protobuf(body)
    except DecodeError:
        return
    assert body[0] == 0
    assert 0 <= schema_id < 2**32
    assert all(i >= 0 for i in indexes)
    assert len(payload) <= len(body) - wire.HEADER_SIZE
