"""Broker layer: eventwire ``Message`` <-> a Kafka record (key, value, headers, timestamp).

The key and body are the record's own key and value; the other envelope fields travel as
headers (``x-eventwire-*``, ``content-type``). A record from a foreign producer without an
eventwire id gets ``<topic>-<partition>-<offset>`` as its id, stable across redeliveries, so
idempotent handling works for it too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from eventwire.core import headers as h
from eventwire.core.message import DEFAULT_CONTENT_TYPE, Message

# Kafka-only headers (named in core.headers with the others).
DUE: Final = h.RETRY_DUE
RETRY_GROUP: Final = h.RETRY_GROUP
DLQ_ORIGINAL_PARTITION: Final = h.DLQ_ORIGINAL_PARTITION
DLQ_ORIGINAL_OFFSET: Final = h.DLQ_ORIGINAL_OFFSET
_INTERNAL: Final = frozenset(
    {
        h.MESSAGE_ID,
        h.CONTENT_TYPE,
        h.CORRELATION_ID,
        h.CAUSATION_ID,
        h.TIMESTAMP,
        h.ATTEMPT,
        DUE,
        RETRY_GROUP,
    }
)

Headers = list[tuple[str, str | bytes | None]]
# The highest attempt a record's header may claim: a producer's forged count is clamped.
MAX_ATTEMPT: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class Record:
    """What ``produce`` takes for one message."""

    key: bytes | None
    value: bytes
    headers: Headers
    timestamp_ms: int


def encode(
    message: Message,
    *,
    attempt: int | None = None,
    due: float | None = None,
    group: str | None = None,
) -> Record:
    """The record for ``message``; ``attempt``/``due``/``group`` mark a retry copy."""
    headers: Headers = [(name, value.encode()) for name, value in message.headers.items()]
    headers.append((h.MESSAGE_ID, message.id.encode()))
    headers.append((h.CONTENT_TYPE, message.content_type.encode()))
    headers.append((h.TIMESTAMP, repr(message.timestamp).encode()))
    if message.correlation_id is not None:
        headers.append((h.CORRELATION_ID, message.correlation_id.encode()))
    if message.causation_id is not None:
        headers.append((h.CAUSATION_ID, message.causation_id.encode()))
    if attempt is not None:
        headers.append((h.ATTEMPT, str(attempt).encode()))
    if due is not None:
        headers.append((DUE, repr(due).encode()))
    if group is not None:
        headers.append((RETRY_GROUP, group.encode()))
    key = None if message.key is None else message.key.encode()
    return Record(key, message.body, headers, int(message.timestamp * 1000))


@dataclass(frozen=True, slots=True)
class Decoded:
    """A delivered record as eventwire sees it."""

    message: Message
    attempt: int  # from the attempt header (1 when absent)
    due: float | None  # wall-clock time a retry copy may be handled, None otherwise
    group: str | None  # the group a retry copy is for


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def decode(  # noqa: PLR0917 - the fields of one record, in the order Kafka names them
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None,
    timestamp_ms: int,
) -> Decoded:
    """Decode a record; a malformed eventwire header from a foreign producer is ignored."""
    raw: dict[str, str] = {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    for name, data in pairs:
        raw[name] = _text(data)  # the last one wins, as with HTTP-like header maps
    user = {k: v for k, v in raw.items() if k not in _INTERNAL}
    message = Message(
        body=value or b"",
        id=raw.get(h.MESSAGE_ID) or f"{topic}-{partition}-{offset}",
        key=None if key is None else _text(key),
        headers=user,
        content_type=raw.get(h.CONTENT_TYPE) or DEFAULT_CONTENT_TYPE,
        correlation_id=raw.get(h.CORRELATION_ID),
        causation_id=raw.get(h.CAUSATION_ID),
        timestamp=_number(raw.get(h.TIMESTAMP), timestamp_ms / 1000),
    )
    attempt = int(min(max(_number(raw.get(h.ATTEMPT), 1), 1), MAX_ATTEMPT))
    due = raw.get(DUE)
    return Decoded(
        message=message,
        attempt=attempt,
        due=None if due is None else _number(due, 0.0),
        group=raw.get(RETRY_GROUP),
    )


def _number(text: str | None, default: float) -> float:
    """``text`` as a finite number, else ``default`` (a producer may write ``inf`` or ``nan``)."""
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        return default
    return value if math.isfinite(value) else default
