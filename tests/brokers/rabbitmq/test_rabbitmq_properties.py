"""Tests: property-based (Hypothesis) checks of the RabbitMQ decoding boundary and dead-letter
encoder: any frame bytes, any headers, any field types give a Message, never an exception,
and a dead letter always carries its original body and reason through the wire format."""

from __future__ import annotations

import datetime
import decimal
import math
import struct

import pamqp.frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from eventwire.brokers.rabbitmq import envelope, frames
from eventwire.core import headers as h

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.binary(max_size=40)
    | st.decimals(
        allow_nan=False, allow_infinity=False, places=2, max_value=10**6, min_value=-(10**6)
    )
    | st.datetimes(timezones=st.just(datetime.UTC))
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
_hostile_text = st.one_of(
    st.sampled_from(["inf", "nan", "-inf", "1e300", "-1000", "9" * 40, "", " 3 ", "0x10", "²"]),
    st.text(max_size=20),
)
_headers = st.dictionaries(
    st.one_of(
        st.text(max_size=12),
        st.sampled_from([h.ATTEMPT, h.TIMESTAMP, h.KEY, "x-death", "x-delivery-count"]),
    ),
    st.one_of(_values, _hostile_text),
    max_size=8,
)


@st.composite
def _properties(draw: st.DrawFn) -> Basic.Properties:
    stamp = draw(st.none() | st.datetimes(timezones=st.just(datetime.UTC)))
    return Basic.Properties(
        content_type=draw(st.none() | st.text(max_size=30)),
        message_id=draw(st.none() | st.text(max_size=40)),
        correlation_id=draw(st.none() | st.text(max_size=20)),
        timestamp=stamp,
        headers=draw(st.none() | _headers),
    )


@FAST
@given(
    body=st.binary(max_size=200),
    properties=_properties(),
    redelivered=st.booleans(),
    via_retry=st.booleans(),
    dead=st.booleans(),
)
def test_decode_is_total_and_the_attempt_bounded(
    body: bytes, properties: Basic.Properties, redelivered: bool, via_retry: bool, dead: bool
) -> None:
    message, attempt = envelope.decode(
        body, properties, redelivered=redelivered, via_retry=via_retry, dead_letters=dead
    )
    assert message.body == body
    assert message.id  # never the shared ""
    assert math.isfinite(message.timestamp)
    assert 1 <= attempt <= envelope.MAX_ATTEMPT
    if not via_retry and not redelivered:
        assert attempt == 1  # a producer's attempt or delivery-count header is never trusted


@FAST
@given(
    body=st.binary(max_size=200), properties=_properties(), reason=st.text(min_size=1, max_size=80)
)
def test_dead_letter_round_trips_body_id_and_reason_through_the_wire(
    body: bytes, properties: Basic.Properties, reason: str
) -> None:
    message, attempt = envelope.decode(body, properties, redelivered=False)
    dead = message.with_headers(**{h.DLQ_REASON: reason, h.DLQ_ATTEMPTS: str(attempt)})
    header = ContentHeader(body_size=len(body), properties=envelope.encode(dead))
    wire = pamqp.frame.marshal(header, 1)
    _, _, back = pamqp.frame.unmarshal(wire)
    assert isinstance(back, ContentHeader)
    assert not frames.problems_of(back)
    again, _ = envelope.decode(body, back.properties, redelivered=False, dead_letters=True)
    assert again.body == body
    assert again.headers[h.DLQ_REASON] == reason
    assert again.id == envelope.encode(dead).message_id
    assert again.content_type == envelope.encode(dead).content_type


def _header_frame(properties: bytes) -> bytes:
    return struct.pack(">HHQ", 60, 0, 3) + properties


@FAST
@given(raw=st.binary(max_size=300))
def test_tolerant_frame_decoder_never_raises_on_any_property_bytes(raw: bytes) -> None:
    header = frames.tolerant_unmarshal_header_frame(_header_frame(raw))
    assert header.body_size == 3
    message, attempt = envelope.decode(
        b"abc", header.properties, redelivered=True, problems=frames.problems_of(header)
    )
    assert message.body == b"abc"
    assert attempt >= 1


@FAST
@given(
    message_id=st.binary(min_size=1, max_size=60),
    flags_extra=st.sampled_from([0, 0x0040]),
    stamp=st.integers(min_value=0, max_value=2**64 - 1),
)
def test_hostile_short_strings_and_timestamps_are_named_not_raised(
    message_id: bytes, flags_extra: int, stamp: int
) -> None:
    flags = 0x0080 | flags_extra
    raw = struct.pack(">H", flags) + bytes([len(message_id)]) + message_id
    if flags_extra:
        raw += struct.pack(">Q", stamp)
    header = frames.tolerant_unmarshal_header_frame(_header_frame(raw))
    problems = frames.problems_of(header)
    try:
        message_id.decode("utf-8")
        bad_id = False
    except UnicodeDecodeError:
        bad_id = True
    assert bad_id == any("message_id" in p for p in problems)
    assert isinstance(header.properties.message_id, str)


def test_well_formed_frames_decode_exactly_as_pamqp_does() -> None:
    properties = Basic.Properties(
        message_id="m", headers={"a": 1, "b": decimal.Decimal("1.5"), "c": [1, "x"]}
    )
    wire = ContentHeader(body_size=1, properties=properties).marshal()
    header = frames.tolerant_unmarshal_header_frame(wire)
    assert type(header) is ContentHeader
    assert header.properties.headers == properties.headers


@FAST
@given(
    tag=st.binary(max_size=40),
    exchange=st.binary(max_size=60),
    key=st.binary(max_size=120),
    delivery_tag=st.integers(min_value=0, max_value=2**63 - 1),
    redelivered=st.booleans(),
)
def test_tolerant_deliver_decoder_reads_any_exchange_and_routing_key_bytes(
    tag: bytes, exchange: bytes, key: bytes, delivery_tag: int, redelivered: bool
) -> None:
    def short(raw: bytes) -> bytes:
        return bytes([len(raw)]) + raw

    frame = (
        struct.pack(">I", Basic.Deliver.index)
        + short(tag)
        + struct.pack(">QB", delivery_tag, int(redelivered))
        + short(exchange)
        + short(key)
    )
    deliver = frames.tolerant_unmarshal_method_frame(frame)
    assert isinstance(deliver, Basic.Deliver)
    assert (deliver.delivery_tag, deliver.redelivered) == (delivery_tag, redelivered)
    assert deliver.routing_key == key.decode("utf-8", "backslashreplace")
