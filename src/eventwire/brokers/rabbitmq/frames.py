"""Broker layer: frame decoders that never fail on a producer's bytes, installed under aiormq.

pamqp decodes every short string as strict UTF-8, turns the timestamp property into a
``datetime`` (years past 9999 do not exist) and recurses through nested tables without a
limit. Any of those raising inside aiormq's reader closes the whole connection, and the
broker then redelivers the same message at every reconnect: one hostile producer stalls every
consumer of the connection. This module wraps pamqp's content-header decoder so that a header
it cannot read is decoded tolerantly instead, and the frame names what was wrong
(``TolerantContentHeader.problems``); the subscription dead-letters such deliveries on the
broker side, byte for byte (see ``subscription``). A basic.deliver whose exchange or routing
key is not UTF-8 is read with the bad bytes escaped, for the same reason.

The wrappers replace ``pamqp.frame._unmarshal_header_frame`` and ``_unmarshal_method_frame``
(what aiormq's ``FrameReceiver`` reaches through ``pamqp.frame.unmarshal``) once,
process-wide. They only run their own code when pamqp raised, so well-formed frames decode
exactly as before. pamqp is pinned in requirements.lock, and
``tests/brokers/rabbitmq/test_rabbitmq_hostile.py`` fails if the hooks stop being reached.
"""

from __future__ import annotations

import datetime
import struct
from collections.abc import Callable
from typing import Any, Final

import pamqp.frame
from pamqp import decode
from pamqp.commands import Basic
from pamqp.header import ContentHeader

MAX_DEPTH: Final = 32  # nested tables/arrays deeper than this are not read
_ORIGINAL: Final[Callable[[bytes], ContentHeader]] = pamqp.frame._unmarshal_header_frame
_ORIGINAL_METHOD: Final[Callable[[bytes], Any]] = pamqp.frame._unmarshal_method_frame
_MAX_TIMESTAMP: Final = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second datetime holds


class TolerantContentHeader(ContentHeader):
    """A content header pamqp could not decode, read field by field; ``problems`` says why."""

    def __init__(self, problems: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.problems: tuple[str, ...] = tuple(problems)


class _Unreadable(Exception):
    """The rest of a field table cannot be read (unknown type, length past the end)."""


def problems_of(header: object) -> tuple[str, ...]:
    """What was wrong with a delivered message's content header (empty when nothing)."""
    return getattr(header, "problems", ())


def _short_str(data: bytes, offset: int, name: str, problems: list[str]) -> tuple[int, str]:
    length = data[offset]
    raw = data[offset + 1 : offset + 1 + length]
    if len(raw) < length:
        raise _Unreadable(f"{name} is cut short")
    try:
        return offset + 1 + length, raw.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(f"{name} is not valid UTF-8")
        return offset + 1 + length, raw.decode("utf-8", "backslashreplace")


def _timestamp(value: int, name: str, problems: list[str]) -> datetime.datetime | int:
    # pamqp reads anything above 2**32 as milliseconds; keep that reading where it fits.
    seconds = value / 1000 if value > 0xFFFFFFFF else value
    if seconds > _MAX_TIMESTAMP:
        problems.append(f"{name} {value} is out of range")
        return value
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)


def _value(data: bytes, offset: int, depth: int, name: str, problems: list[str]) -> tuple[int, Any]:
    """One typed field value at ``offset``: (offset after it, value)."""
    kind = data[offset : offset + 1]
    offset += 1
    if kind in (b"F", b"A") and depth >= MAX_DEPTH:
        # Its length is known: skip it and keep reading the headers after it (x-death).
        problems.append(f"header {name!r} is nested deeper than {MAX_DEPTH} levels")
        return _bounds(data, offset, name)[1], None
    if kind == b"F":
        return _table(data, offset, depth + 1, name, problems)
    if kind == b"A":
        return _array(data, offset, depth + 1, name, problems)
    if kind == b"T":
        (value,) = struct.unpack_from(">Q", data, offset)
        return offset + 8, _timestamp(value, f"header {name!r} timestamp", problems)
    reader = decode.TABLE_MAPPING.get(kind)
    if reader is None:
        raise _Unreadable(f"header {name!r} has unknown field type {kind!r}")
    try:
        consumed, value = reader(data[offset:])
    except ValueError as exc:
        raise _Unreadable(f"header {name!r}: {exc}") from exc
    return offset + consumed, value


def _bounds(data: bytes, offset: int, name: str) -> tuple[int, int]:
    (length,) = struct.unpack_from(">I", data, offset)
    end = offset + 4 + length
    if end > len(data):
        raise _Unreadable(f"header {name!r} is longer than the frame")
    return offset + 4, end


def _table(
    data: bytes, offset: int, depth: int, name: str, problems: list[str]
) -> tuple[int, dict[str, Any]]:
    offset, end = _bounds(data, offset, name)
    table: dict[str, Any] = {}
    while offset < end:
        offset, key = _short_str(data, offset, "a header name", problems)
        offset, table[key] = _value(data[:end], offset, depth, key, problems)
    return end, table


def _array(
    data: bytes, offset: int, depth: int, name: str, problems: list[str]
) -> tuple[int, list[Any]]:
    offset, end = _bounds(data, offset, name)
    items: list[Any] = []
    while offset < end:
        offset, item = _value(data[:end], offset, depth, name, problems)
        items.append(item)
    return end, items


def _properties(flags: int, data: bytes, problems: list[str]) -> Basic.Properties:
    properties = Basic.Properties()
    offset = 0
    for name in Basic.Properties.__slots__:
        if not flags & Basic.Properties.flags[name]:
            continue
        kind = getattr(Basic.Properties, "_" + name)
        value: Any
        if kind == "shortstr":
            offset, value = _short_str(data, offset, name, problems)
        elif kind == "octet":
            value, offset = data[offset], offset + 1
        elif kind == "timestamp":
            (raw,) = struct.unpack_from(">Q", data, offset)
            offset += 8
            stamp = _timestamp(raw, name, problems)
            value = stamp if isinstance(stamp, datetime.datetime) else None
        else:  # the headers table
            try:
                offset, value = _table(data, offset, 1, name, problems)
            except (_Unreadable, struct.error, IndexError) as exc:
                problems.append(f"headers table unreadable: {exc or type(exc).__name__}")
                return properties  # later properties sit behind bytes we cannot measure
        setattr(properties, name, value)
    return properties


def tolerant_unmarshal_header_frame(frame_data: bytes) -> ContentHeader:
    """pamqp's decode, or when it fails a field-by-field one that names what was wrong."""
    try:
        return _ORIGINAL(frame_data)
    except Exception as first:  # noqa: BLE001 - anything pamqp raises (incl. RecursionError)
        cause = f"{type(first).__name__}: {first}"
    # The first 12 bytes come from the broker itself; the properties are the producer's.
    class_id, weight, body_size = struct.unpack(">HHQ", frame_data[0:12])
    problems: list[str] = []
    try:
        consumed, flags = ContentHeader._get_flags(frame_data[12:])
        properties = _properties(flags, frame_data[12 + consumed :], problems)
    except (_Unreadable, ValueError, struct.error, IndexError) as exc:
        problems.append(f"properties unreadable: {exc or type(exc).__name__}")
        properties = Basic.Properties()
    if not problems:
        problems.append(f"properties unreadable: {cause}")
    header = TolerantContentHeader(
        problems, weight=weight, body_size=body_size, properties=properties
    )
    header.class_id = class_id
    return header


def tolerant_unmarshal_method_frame(frame_data: bytes) -> Any:
    """pamqp's decode; a basic.deliver whose exchange or routing key is not UTF-8 (a
    producer publishing into a topic or delay exchange with such a key) is read with the
    bad bytes escaped instead of closing the connection."""
    try:
        return _ORIGINAL_METHOD(frame_data)
    except Exception:
        if frame_data[:4] != struct.pack(">I", Basic.Deliver.index):
            raise  # nothing a producer controls: a broken broker frame stays fatal
    problems: list[str] = []
    offset, consumer_tag = _short_str(frame_data, 4, "consumer_tag", problems)
    (delivery_tag, flags) = struct.unpack_from(">qB", frame_data, offset)  # signed, as pamqp
    offset, exchange = _short_str(frame_data, offset + 9, "exchange", problems)
    _, routing_key = _short_str(frame_data, offset, "routing_key", problems)
    deliver = Basic.Deliver()  # the constructor validates names; set the fields after it
    deliver.consumer_tag, deliver.delivery_tag = consumer_tag, delivery_tag
    deliver.redelivered, deliver.exchange, deliver.routing_key = (
        bool(flags & 1),
        exchange,
        routing_key,
    )
    return deliver


def install() -> None:
    """Put the tolerant decoders under aiormq (idempotent)."""
    pamqp.frame._unmarshal_header_frame = tolerant_unmarshal_header_frame
    pamqp.frame._unmarshal_method_frame = tolerant_unmarshal_method_frame
