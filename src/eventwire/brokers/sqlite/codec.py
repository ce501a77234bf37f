"""Broker layer: Message <-> sqlite row, refusing (not crashing on) rows it cannot trust."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, TypeAlias

from eventwire.brokers._support.envelope import REASON_PREFIX, EnvelopeError, checked
from eventwire.core import headers as h
from eventwire.core.message import Message, new_message_id

# Column order shared by INSERT (encode) and the claim SELECT (decode).
COLUMNS: Final = (
    "msg_id, msg_key, content_type, correlation_id, causation_id, created, headers, body"
)
# Text columns are read back as BLOB so a non-UTF-8 value reaches decode() as bytes instead of
# failing the whole fetch inside sqlite3.
SELECT_COLUMNS: Final = (
    "CAST(m.msg_id AS BLOB), CAST(m.msg_key AS BLOB), CAST(m.content_type AS BLOB), "
    "CAST(m.correlation_id AS BLOB), CAST(m.causation_id AS BLOB), CAST(m.created AS REAL), "
    "CAST(m.headers AS BLOB), CAST(m.body AS BLOB)"
)

Row: TypeAlias = tuple[Any, ...]
EncodedMessage: TypeAlias = tuple[str, str | None, str, str | None, str | None, float, str, bytes]


def encode(message: Message) -> EncodedMessage:
    """The column values of ``message`` in ``COLUMNS`` order."""
    return (
        message.id,
        message.key,
        message.content_type,
        message.correlation_id,
        message.causation_id,
        message.timestamp,
        json.dumps(dict(message.headers), separators=(",", ":"), ensure_ascii=False),
        message.body,
    )


# A stored row whose envelope (id, headers, ...) cannot be turned into a Message.
__all__ = ["EnvelopeError"]


def decode(row: Row) -> Message:
    """The ``Message`` of a row selected with ``SELECT_COLUMNS``; ``EnvelopeError`` if broken."""
    raw_id, raw_key, raw_type, raw_corr, raw_cause, created, raw_headers, body = row
    try:
        headers = json.loads(_text(raw_headers, "headers"))
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise EnvelopeError("headers are not a JSON object of strings")
        message = Message(
            body=_blob(body),
            id=_text(raw_id, "id"),
            key=_optional(raw_key, "key"),
            headers=headers,
            content_type=_text(raw_type, "content type"),
            correlation_id=_optional(raw_corr, "correlation id"),
            causation_id=_optional(raw_cause, "causation id"),
            timestamp=float(created),
        )
        # The limits every adapter's decoding boundary applies (an empty id would make
        # distinct rows one message to idempotency; a non-finite time, header floods).
        checked(message)
    except EnvelopeError:
        raise
    except Exception as exc:  # InvalidHeaderError, ValueError...: any bad envelope is data
        raise EnvelopeError(f"{type(exc).__name__}: {exc}") from exc
    return message


def salvage(row: Row, *, topic: str, group: str, attempt: int, error: str) -> Message:
    """A dead letter for a row ``decode`` refused: the body bytes kept, the envelope rebuilt."""
    raw_id = row[0]
    try:
        message_id = _text(raw_id, "id")
        Message(body=b"", id=message_id).validate()
    except Exception:  # noqa: BLE001 - a broken id is replaced, never trusted
        message_id = new_message_id()
    detail = error.replace("\r", " ").replace("\n", " ").replace("\x00", " ")[:500]
    extra: Mapping[str, str] = {
        h.DLQ_REASON: REASON_PREFIX + detail[:200],
        h.DLQ_DETAIL: detail,
        h.DLQ_ORIGINAL_TOPIC: topic,
        h.DLQ_ATTEMPTS: str(attempt),
        h.DLQ_GROUP: group,
    }
    return Message(body=_blob(row[7]), id=message_id, headers=extra)


def _text(value: object, what: str) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EnvelopeError(f"{what} is not valid UTF-8") from exc
    raise EnvelopeError(f"{what} is missing or not text")


def _optional(value: object, what: str) -> str | None:
    return None if value is None else _text(value, what)


def _blob(value: object) -> bytes:
    return value if isinstance(value, bytes) else b""
