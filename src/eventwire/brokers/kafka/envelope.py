"""Broker layer: eventwire ``Message`` <-> a Kafka record (key, value, headers, timestamp).

The key and body are the record's own key and value; the other envelope fields travel as
headers (``x-eventwire-*``, ``content-type``). A record from a foreign producer without an
eventwire id gets ``<topic>-<partition>-<offset>`` as its id, stable across redeliveries, so
idempotent handling works for it too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final, NamedTuple

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


class Record(NamedTuple):
    """What ``produce`` takes for one message (a tuple: one is made per message)."""

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
    user = message.headers
    headers: Headers = [(name, value.encode()) for name, value in user.items()] if user else []
    headers += (
        (h.MESSAGE_ID, message.id.encode()),
        (h.CONTENT_TYPE, message.content_type.encode()),
        (h.TIMESTAMP, repr(message.timestamp).encode()),
    )
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


class Decoded(NamedTuple):
    """A delivered record as eventwire sees it (a tuple: one is made per message)."""

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
    *,
    trusted: bool = True,
) -> Decoded:
    """Decode a record; a malformed eventwire header from a foreign producer is ignored.

    ``trusted=False`` (a record on an application topic, not one of eventwire's retry
    topics): its attempt, due and group headers are ignored as forged; attempt is 1.
    """
    raw: dict[str, str] = {}  # eventwire's own headers
    user: dict[str, str] = {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    internal = _INTERNAL
    for name, data in pairs:
        # The last one wins, as with HTTP-like header maps. One pass, no helper call per
        # header: this runs for every header of every record consumed.
        text = data.decode("utf-8", "replace") if type(data) is bytes else _text(data)
        if name in internal:
            raw[name] = text
        else:
            user[name] = text
    get = raw.get
    # Message.trusted: every value has its final type here, and the constructor's checks
    # cost about as much as the rest of this function.
    message = Message.trusted(
        value or b"",
        get(h.MESSAGE_ID) or f"{topic}-{partition}-{offset}",
        None if key is None else _text(key),
        MappingProxyType(user),
        get(h.CONTENT_TYPE) or DEFAULT_CONTENT_TYPE,
        get(h.CORRELATION_ID),
        get(h.CAUSATION_ID),
        _number(get(h.TIMESTAMP), timestamp_ms / 1000),
    )
    if not trusted:
        return Decoded(message=message, attempt=1, due=None, group=None)
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
