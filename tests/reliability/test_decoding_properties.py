"""Property tests of every adapter decoder and of the raw dead-letter encoders: for any bytes,
any headers and any field types the result is a ``Message`` or ``EnvelopeError``, never
another exception; a raw dead letter always keeps the original bytes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventwire.brokers._support.envelope import EnvelopeError, unreadable
from eventwire.brokers.kafka import envelope as kafka_envelope
from eventwire.brokers.nats.envelope import from_nats, raw_dead_letter
from eventwire.brokers.nats.frames import UNPARSED_HEADERS, TolerantClient
from eventwire.brokers.redis.envelope import (
    fields_of_raw_entry,
    from_fields,
    from_payload,
    raw_entry,
    to_fields,
    to_payload,
)
from eventwire.brokers.sqlite import codec
from eventwire.core import headers as h
from eventwire.core.errors import DecodeError
from eventwire.core.message import Message
from eventwire.serialization import codec as plain_codec
from eventwire.serialization.avro import AvroCodec
from eventwire.serialization.json_schema import JSONSchemaCodec
from eventwire.serialization.registry_file import FileSchemaRegistry
from eventwire.serialization.schema_choice import ByContentType

NAMES = st.sampled_from([b"id", b"body", b"key", b"ct", b"cid", b"caid", b"ts", b"h", b"x"])
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
).map(lambda v: json.dumps(v).encode())
HOSTILE_VALUE = st.one_of(
    st.binary(max_size=200),
    JSONISH,
    st.just(b"[" * 100_000),  # nested 100,000 deep
    st.just(b"1" * 400),  # a 400-digit number
    st.sampled_from([b"inf", b"nan", b"1e300", b"-1e400"]),
)
TEXT = st.text(max_size=30)


def _message_or_envelope_error(decode: Callable[..., object], *args: object) -> Message | None:
    try:
        result = decode(*args)
    except EnvelopeError:
        return None
    assert isinstance(result, Message)
    return result


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(NAMES, HOSTILE_VALUE, max_size=8))
def test_redis_entry_decoder_only_raises_its_own_error(fields: dict[bytes, bytes]) -> None:
    _message_or_envelope_error(from_fields, fields)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.dictionaries(st.text(max_size=6), JSONISH, max_size=6))
def test_redis_pubsub_decoder_only_raises_its_own_error(
    tail: bytes, envelope: dict[str, bytes]
) -> None:
    _message_or_envelope_error(from_payload, tail)
    head = json.dumps({k: json.loads(v) for k, v in envelope.items()}).encode()
    _message_or_envelope_error(from_payload, b"EW1\n" + head + b"\n" + tail)
    _message_or_envelope_error(from_payload, b"EW1\n" + b"[" * 100_000 + b"\n")
    _message_or_envelope_error(from_payload, b'EW1\n{"id":"a","ts":' + b"9" * 400 + b"}\n")


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=300),
    st.none()
    | st.dictionaries(
        st.sampled_from(
            [h.MESSAGE_ID, h.TIMESTAMP, h.KEY, h.CONTENT_TYPE, "Nats-Msg-Id", "x", "y\x00"]
        )
        | TEXT,
        TEXT | st.sampled_from(["inf", "nan", "1e300", "v\x00", "v\u00a0", "a" * 20_000]),
        max_size=8,
    ),
)
def test_nats_decoder_only_raises_its_own_error(
    body: bytes, headers: dict[str, str] | None
) -> None:
    message = _message_or_envelope_error(from_nats, body, headers)
    if message is not None:
        assert message.body == body
        assert message.timestamp == message.timestamp  # finite, never NaN


@settings(max_examples=300, deadline=None)
@given(
    st.tuples(
        st.none() | st.binary(max_size=40) | st.integers(),
        st.none() | st.binary(max_size=20),
        st.none() | st.binary(max_size=20),
        st.none() | st.binary(max_size=20),
        st.none() | st.binary(max_size=20),
        st.none() | st.floats() | st.text(max_size=5),
        st.none() | HOSTILE_VALUE | st.integers(),
        st.none() | st.binary(max_size=50) | st.text(max_size=5),
    )
)
def test_sqlite_row_decoder_only_raises_its_own_error(row: tuple[object, ...]) -> None:
    _message_or_envelope_error(codec.decode, row)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.binary(max_size=20), st.binary(max_size=300), max_size=8))
def test_a_raw_redis_entry_round_trips_every_byte(fields: dict[bytes, bytes]) -> None:
    assert fields_of_raw_entry(raw_entry(fields)) == fields


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), TEXT, st.none() | TEXT)
def test_a_raw_dead_letter_keeps_its_bytes_and_can_be_sent(
    raw: bytes, why: str, message_id: str | None
) -> None:
    dead = unreadable(raw, why=why, topic="t", group="g", message_id=message_id)
    assert dead.body == raw
    assert dead.headers[h.DLQ_REASON].startswith("unreadable envelope: ")
    dead.validate()  # the dead-letter publish cannot fail on its own headers
    # And through the wire layouts that carry it.
    assert from_fields(to_fields(dead)).body == raw
    assert from_payload(to_payload(dead)).body == raw


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=2000),
    st.none() | st.dictionaries(TEXT, TEXT | st.just("v\x00\u00a0"), max_size=6),
)
def test_a_raw_nats_dead_letter_keeps_body_and_headers(
    body: bytes, headers: dict[str, str] | None
) -> None:
    dead, wire = raw_dead_letter(
        body, headers, why="x", topic="t", group="g", attempt=1, max_payload=1024 * 1024
    )
    assert dead.body == body
    if headers:
        assert dict(json.loads(base64.b64decode(dead.headers[h.DLQ_RAW_HEADERS]))) == headers
    assert from_nats(body, wire).headers[h.DLQ_REASON].startswith("unreadable envelope")


KAFKA_HEADER_NAMES = st.sampled_from(
    [h.MESSAGE_ID, h.TIMESTAMP, h.ATTEMPT, h.CONTENT_TYPE, h.KEY, "x-eventwire-due", "x"]
)
KAFKA_HEADER_VALUES = st.none() | HOSTILE_VALUE | st.text(max_size=20)


@settings(max_examples=300, deadline=None)
@given(
    st.none() | st.binary(max_size=50),
    st.none() | st.binary(max_size=300),
    st.none()
    | st.lists(st.tuples(KAFKA_HEADER_NAMES | TEXT, KAFKA_HEADER_VALUES), max_size=8)
    | st.dictionaries(KAFKA_HEADER_NAMES | TEXT, KAFKA_HEADER_VALUES, max_size=8),
    st.integers(-(2**63), 2**63 - 1),
)
def test_kafka_record_decoder_is_total_with_a_bounded_attempt(
    key: bytes | None, value: bytes | None, headers: object, stamp: int
) -> None:
    # On main a forged ``x-eventwire-attempt: inf`` (or nan, 1e400) raised in the worker's
    # dispatch loop, and a ``nan`` timestamp reached the handler.
    try:
        decoded = kafka_envelope.decode("t", 0, 7, key, value, headers, stamp)  # type: ignore[arg-type]  # any Hypothesis value on purpose: the decoder must be total
    except EnvelopeError:
        return
    assert isinstance(decoded.message, Message)
    assert 1 <= decoded.attempt <= kafka_envelope.MAX_ATTEMPT
    assert math.isfinite(decoded.message.timestamp)
    assert decoded.due is None or math.isfinite(decoded.due)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.binary(max_size=100).map(lambda b: b"NATS/1.0" + b),
        st.binary(max_size=60).map(lambda b: b"NATS/1.0 " + b + b"\r\n\r\n"),
        st.lists(st.binary(max_size=30), max_size=5).map(
            lambda lines: b"NATS/1.0\r\n" + b"".join(x + b"\r\n" for x in lines) + b"\r\n"
        ),
    ),
    st.binary(max_size=20),
)
def test_nats_client_reads_any_header_block_and_reply_subject(block: bytes, reply: bytes) -> None:
    # nats-py's own parser raised IndexError/UnicodeDecodeError here, ending its read loop.
    client = TolerantClient()
    headers = asyncio.run(client._process_headers(block))
    assert headers is None or isinstance(headers, dict)
    msg = client._build_message(1, b"ew.t", reply, b"body", headers)
    assert msg.data == b"body"
    if headers and UNPARSED_HEADERS in headers:
        assert base64.b64decode(headers[UNPARSED_HEADERS]) == block  # every byte kept
        _message_or_envelope_error(from_nats, b"body", headers)


class _Order(pydantic.BaseModel):
    order_id: str
    amount: int


CONTENT_TYPES = st.one_of(
    st.sampled_from(
        [
            "",
            "application/json",
            "application/json; charset=latin-1",
            "application/vnd.x+json",
            "text/plain; charset=utf-8",
            "text/csv",
            "application/octet-stream",
            "application/x-pickle",
            "application/avro",
            "application/vnd.schemaregistry.v1+json",
            ";;;",
            "application/json; charset",
        ]
    ),
    st.text(max_size=30),
)
BODIES = st.one_of(
    st.binary(max_size=200),
    JSONISH,
    st.just(b"[" * 100_000),
    st.just(b'{"order_id": "o", "amount": ' + b"9" * 400 + b"}"),
    st.just(b"\x00\x00\x00\x00\x01" + b"\x02o\x02"),  # a registry frame with a made-up id
)


@settings(max_examples=300, deadline=None)
@given(BODIES, CONTENT_TYPES)
def test_every_plain_decoder_gives_a_value_or_a_decode_error(
    body: bytes, content_type: str
) -> None:
    message = Message(body=body, content_type=content_type)
    for annotation in (_Order, dict, list, Any, str, bytes, Message, list[int], dict[str, int]):
        with contextlib.suppress(DecodeError):
            plain_codec.decoder_for(annotation)(message)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(BODIES, CONTENT_TYPES)
def test_by_content_type_gives_a_value_or_a_decode_error(body: bytes, content_type: str) -> None:
    # Any content type (a codec's, JSON, none, a foreign one) and any body, a registry frame
    # naming an unknown schema id included: the chosen codec's value or a DecodeError.
    with tempfile.TemporaryDirectory() as tmp:
        registry = FileSchemaRegistry(Path(tmp) / "registry.json")
        avro, json_schema = AvroCodec(_Order, registry), JSONSchemaCodec(_Order, registry)

        async def check() -> None:
            await avro.encode(_Order(order_id="o", amount=1), topic="fuzz")  # schema id 1 exists
            decode = ByContentType(avro, json_schema).decoder_for(_Order)
            with contextlib.suppress(DecodeError):
                await decode(Message(body=body, content_type=content_type))

        asyncio.run(check())
