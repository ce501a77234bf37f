"""Broker layer: eventwire ``Message`` <-> NATS headers and body, both directions."""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Mapping

from eventwire.brokers._support.envelope import (
    MAX_TIMESTAMP,
    EnvelopeError,
    checked,
    decoding,
    unreadable,
)
from eventwire.brokers.nats.frames import UNPARSED_HEADERS, UNPARSED_WHY
from eventwire.core import headers as h
from eventwire.core.errors import InvalidHeaderError, MessageTooLargeError
from eventwire.core.headers import MAX_HEADER_VALUE
from eventwire.core.message import DEFAULT_CONTENT_TYPE, Message, new_message_id

MSG_ID = "Nats-Msg-Id"  # JetStream dedups on it; it also carries the message id
_RESERVED_PREFIX = "nats-"  # server-interpreted headers a user must not set by accident


def to_headers(message: Message, *, dedup_id: str | None = None) -> dict[str, str]:
    """The NATS headers carrying ``message``'s envelope and user headers.

    ``dedup_id`` replaces the message id as ``Nats-Msg-Id`` (the id then travels in its own
    header): two groups dead-letter the same message under one id, and JetStream's duplicate
    window would otherwise keep only the first of those dead letters.

    ``Message.validate`` already refused CR/LF/NUL and non-UTF-8 text; this also refuses user
    headers named ``Nats-*``, which the server would act on (expected stream, rollups, ...).
    """
    out: dict[str, str] = {}
    for name, value in message.headers.items():
        if name.lower().startswith(_RESERVED_PREFIX):
            raise InvalidHeaderError(f"header {name!r} is reserved by NATS (Nats-*): rename it")
        out[name] = value
    out[MSG_ID] = dedup_id or message.id
    if dedup_id is not None:
        out[h.MESSAGE_ID] = message.id
    out[h.TIMESTAMP] = repr(message.timestamp)
    if message.content_type != DEFAULT_CONTENT_TYPE:
        out[h.CONTENT_TYPE] = message.content_type
    if message.key is not None:
        out[h.KEY] = message.key
    if message.correlation_id is not None:
        out[h.CORRELATION_ID] = message.correlation_id
    if message.causation_id is not None:
        out[h.CAUSATION_ID] = message.causation_id
    for name, value in out.items():
        if value != value.strip():
            # nats-py strips header values; refusing beats delivering a different value.
            raise InvalidHeaderError(
                f"header {name!r} starts or ends with whitespace, which NATS drops: trim it"
            )
    return out


def check_size(message: Message, headers: Mapping[str, str], max_payload: int) -> None:
    """Refuse, before sending, a message the connected server would reject as too large."""
    # NATS/1.0 header block: "NATS/1.0\r\n" + "name: value\r\n"* + "\r\n".
    header_bytes = 12 + sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items())
    if len(message.body) + header_bytes > max_payload:
        raise MessageTooLargeError(
            f"message {message.id} is {len(message.body)} bytes of body plus {header_bytes} of "
            f"headers; the NATS server accepts at most {max_payload} (max_payload): store large "
            "payloads elsewhere and send a reference"
        )


def from_nats(
    body: bytes, headers: Mapping[str, str] | None, *, fallback_id: str | None = None
) -> Message:
    """Rebuild the ``Message`` published by ``to_headers`` (foreign messages get defaults);
    ``EnvelopeError`` (only) when the headers are beyond the limits or could not be sent
    again (NUL, CR/LF, non-text). Without an id, ``fallback_id`` (stable across
    redeliveries: the stream sequence) is used, so idempotency holds for foreign messages."""
    with decoding("NATS message"):
        if not headers:
            return Message(body=body, id=fallback_id or new_message_id())
        user = dict(headers)
        if UNPARSED_HEADERS in user:
            raise EnvelopeError(f"header block nats-py cannot parse: {user.get(UNPARSED_WHY)}")
        explicit_id = user.pop(h.MESSAGE_ID, None)
        dedup_id = user.pop(MSG_ID, None)
        message_id = explicit_id or dedup_id or fallback_id or new_message_id()
        stamp = user.pop(h.TIMESTAMP, None)
        content_type = user.pop(h.CONTENT_TYPE, None) or DEFAULT_CONTENT_TYPE
        key = user.pop(h.KEY, None)
        correlation = user.pop(h.CORRELATION_ID, None)
        causation = user.pop(h.CAUSATION_ID, None)
        for name in [n for n in user if n.lower().startswith(_RESERVED_PREFIX)]:
            del user[name]  # server-added (Nats-Expected-*, Nats-Sequence, ...), not the sender's
        return checked(
            Message(
                body=body,
                id=message_id,
                key=key,
                headers=user,
                content_type=content_type,
                correlation_id=correlation,
                causation_id=causation,
                timestamp=_timestamp(stamp),
            )
        )


def raw_dead_letter(
    body: bytes,
    headers: Mapping[str, str] | None,
    *,
    why: str,
    topic: str,
    group: str | None,
    attempt: int,
    max_payload: int,
    message_id: str | None = None,
) -> tuple[Message, dict[str, str]]:
    """A dead letter for a message eventwire cannot read or send on as it is: the body
    unchanged, the original headers base64-encoded in one header when they fit in the
    server's ``max_payload`` (else left out, and the detail says so); with its NATS headers."""
    dead = unreadable(
        body,
        why=why,
        topic=topic,
        group=group,
        attempt=attempt,
        raw_format=RAW_FORMAT_NATS,
        message_id=message_id,
    )
    if headers:
        packed = base64.b64encode(
            json.dumps(list(dict(headers).items()), ensure_ascii=True).encode()
        ).decode()
        with_headers = dead.with_headers(**{h.DLQ_RAW_HEADERS: packed})
        if len(packed) <= MAX_HEADER_VALUE and _fits(with_headers, max_payload):
            dead = with_headers
        else:
            dead = dead.with_headers(
                **{h.DLQ_DETAIL: f"{dead.headers[h.DLQ_DETAIL]} (original headers too large)"}
            )
    return dead, to_headers(dead)


RAW_FORMAT_NATS = "nats-message"  # body unchanged; original headers in DLQ_RAW_HEADERS


def _fits(message: Message, max_payload: int) -> bool:
    try:
        check_size(message, to_headers(message), max_payload)
    except MessageTooLargeError:
        return False
    return True


def _timestamp(text: str | None) -> float:
    if text:
        try:  # not contextlib.suppress: this runs for every delivery
            value = float(text)
        except ValueError:
            pass
        else:
            if math.isfinite(value) and abs(value) <= MAX_TIMESTAMP:
                return value
    return time.time()  # a foreign publisher: the time it reached us is the best we know
