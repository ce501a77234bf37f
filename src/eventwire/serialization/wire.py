"""Serialization layer: the Confluent wire format (magic byte, schema id, Protobuf indexes).

    byte 0      0x00 (the magic byte)
    bytes 1-4   the schema id, big-endian unsigned
    Protobuf    the message-index array: zigzag varint count, then one zigzag varint per
                level (the message's position in its .proto file, nested types after);
                ``[0]`` (the file's first message) is written as the single byte 0x00
    rest        the payload in the schema's own encoding

Java, Go, Node and Python services using Confluent's serializers write and read exactly this,
so eventwire's bytes and theirs are interchangeable. Stdlib only.
"""

from __future__ import annotations

import struct
from typing import Final

from eventwire.core.errors import DecodeError

MAGIC: Final = 0
HEADER_SIZE: Final = 5
_HEADER: Final = struct.Struct(">bI")
# Deeper nesting than this is not a real .proto layout: a hostile body claiming a huge
# index array is refused before anything is allocated for it.
MAX_INDEX_DEPTH: Final = 64
_MAX_VARINT_BYTES: Final = 10


def frame(schema_id: int, payload: bytes, *, indexes: list[int] | None = None) -> bytes:
    """``payload`` behind the magic byte and ``schema_id`` (and the Protobuf ``indexes``)."""
    head = _HEADER.pack(MAGIC, schema_id)
    if indexes is None:
        return head + payload
    return head + encode_indexes(indexes) + payload


def schema_id_of(body: bytes) -> int:
    """The schema id a framed body names; ``DecodeError`` if it is not in the wire format."""
    if len(body) < HEADER_SIZE:
        raise DecodeError(
            f"body is {len(body)} bytes, shorter than the {HEADER_SIZE}-byte schema header"
        )
    magic, schema_id = _HEADER.unpack_from(body)
    if magic != MAGIC:
        raise DecodeError(
            f"unknown magic byte {body[0]:#04x}: not in the schema registry wire format"
        )
    return int(schema_id)


def unframe(body: bytes) -> tuple[int, memoryview]:
    """The schema id and the payload after the 5-byte header."""
    return schema_id_of(body), memoryview(body)[HEADER_SIZE:]


def unframe_protobuf(body: bytes) -> tuple[int, list[int], memoryview]:
    """The schema id, the message-index array and the Protobuf payload."""
    schema_id, rest = unframe(body)
    indexes, used = decode_indexes(rest)
    return schema_id, indexes, rest[used:]


def encode_indexes(indexes: list[int]) -> bytes:
    """The message-index array in Confluent's form (``[0]`` as one zero byte)."""
    if not indexes:
        raise ValueError("a message-index array has at least one entry")
    if indexes == [0]:
        return b"\x00"
    return b"".join(_zigzag_varint(v) for v in [len(indexes), *indexes])


def decode_indexes(data: memoryview | bytes) -> tuple[list[int], int]:
    """The message-index array at the start of ``data`` and how many bytes it took."""
    count, pos = _read_zigzag(data, 0)
    if count == 0:
        return [0], pos
    if count < 0 or count > MAX_INDEX_DEPTH:
        raise DecodeError(f"message-index array claims {count} entries: not a Protobuf header")
    indexes = []
    for _ in range(count):
        value, pos = _read_zigzag(data, pos)
        if value < 0:
            raise DecodeError(f"negative message index {value} in the Protobuf header")
        indexes.append(value)
    return indexes, pos


def _zigzag_varint(value: int) -> bytes:
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_zigzag(data: memoryview | bytes, pos: int) -> tuple[int, int]:
    shift = 0
    n = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= len(data):
            raise DecodeError("body ends inside the Protobuf message-index header")
        byte = data[pos + i]
        n |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (n >> 1) ^ -(n & 1), pos + i + 1
        shift += 7
    raise DecodeError("varint longer than 10 bytes in the Protobuf message-index header")
