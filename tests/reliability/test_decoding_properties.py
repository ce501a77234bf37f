"""Property tests of every adapter decoder and of the raw dead-letter encoders: for any bytes,
any headers and any field types the result is a ``Message`` or ``EnvelopeError``, never
another exception; a raw dead letter always keeps the original bytes."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from eventwire.brokers._support.envelope import EnvelopeError, unreadable
from eventwire.brokers.nats._envelope import from_nats, raw_dead_letter
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
from eventwire.core.message import Message

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


def _message_or_envelope_error(decode: object, *args: object) -> Message | None:
    try:
        result = decode(*args)  # type: ignore[operator]
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
        import base64

        assert dict(json.loads(base64.b64decode(dead.headers[h.DLQ_RAW_HEADERS]))) == headers
    assert from_nats(body, wire).headers[h.DLQ_REASON].startswith("unreadable envelope")
