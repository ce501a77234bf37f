"""Broker layer: the decoding boundary every adapter shares: limits, the decode error, and the
raw dead letter of a delivery whose envelope cannot be read.

An adapter turns what its client hands over into a ``Message`` or raises ``EnvelopeError``
(and nothing else: ``decoding`` maps the stray ``RecursionError``/``OverflowError``/...).
A delivery that raised goes to the dead-letter topic in raw form: every byte kept, reason
``unreadable envelope: <why>``, built from nothing the failed decode produced, so the
dead-letter path never fails for lack of a field.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Final

from eventwire.core import headers as h
from eventwire.core.errors import DecodeError
from eventwire.core.message import Message, new_message_id

MAX_HEADERS: Final = 256  # header count of one envelope
MAX_HEADER_BLOCK: Final = 64 * 1024  # bytes of all header names and values together
MAX_ID: Final = 1024  # characters of a message, correlation or causation id / key
# Seconds since the epoch a producer's timestamp may claim: year 1970 to 5138.
MAX_TIMESTAMP: Final = 1e11
REASON_PREFIX: Final = "unreadable envelope: "


class EnvelopeError(DecodeError):
    """What a broker handed over is not an envelope eventwire can read (within its limits)."""

    reason = "unreadable envelope"


@contextmanager
def decoding(what: str) -> Iterator[None]:
    """Turn any failure inside the block into ``EnvelopeError`` (deep JSON, huge numbers,
    wrong types, bad UTF-8): a producer's bytes must never raise anything else."""
    try:
        yield
    except EnvelopeError:
        raise
    except (RecursionError, MemoryError) as exc:
        raise EnvelopeError(f"{what} is nested too deeply or too large") from exc
    except Exception as exc:
        raise EnvelopeError(f"{what}: {type(exc).__name__}: {str(exc)[:200]}") from exc


def check_headers(headers: Mapping[str, str]) -> None:
    """Count and total size within limits; names and values str."""
    if len(headers) > MAX_HEADERS:
        raise EnvelopeError(f"{len(headers)} headers; at most {MAX_HEADERS} are read")
    size = 0
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise EnvelopeError("header names and values must be text")
        size += len(name) + len(value)
    if size > MAX_HEADER_BLOCK:
        raise EnvelopeError(f"headers are {size} characters; at most {MAX_HEADER_BLOCK}")


def check_timestamp(value: float) -> float:
    if not math.isfinite(value) or abs(value) > MAX_TIMESTAMP:
        raise EnvelopeError(f"timestamp {value!r} is not a time eventwire can use")
    return value


def check_id(value: str, what: str = "id") -> str:
    if not value or len(value) > MAX_ID:
        raise EnvelopeError(f"{what} is empty or longer than {MAX_ID} characters")
    return value


def checked(message: Message) -> Message:
    """``message`` if it passes the limits and the header rules every publish obeys."""
    check_headers(message.headers)
    check_id(message.id)
    check_timestamp(message.timestamp)
    for what, value in (
        ("key", message.key),
        ("correlation id", message.correlation_id),
        ("causation id", message.causation_id),
    ):
        if value is not None and len(value) > MAX_ID:
            raise EnvelopeError(f"{what} is longer than {MAX_ID} characters")
    with decoding("envelope"):
        message.validate()
    return message


def unreadable(
    raw: bytes,
    *,
    why: str,
    topic: str,
    group: str | None,
    attempt: int = 1,
    raw_format: str = "body",
    message_id: str | None = None,
) -> Message:
    """The raw dead letter of a delivery whose envelope could not be read: ``raw`` (every byte
    the broker handed over, laid out as ``raw_format`` says) as the body."""
    detail = why.translate(_CONTROL).encode("utf-8", "replace").decode("utf-8")[:2000]
    headers = {
        h.DLQ_REASON: REASON_PREFIX + detail[:200],
        h.DLQ_DETAIL: detail,
        h.DLQ_ORIGINAL_TOPIC: topic,
        h.DLQ_ATTEMPTS: str(max(1, attempt)),
        h.DLQ_RAW_FORMAT: raw_format,
    }
    if group:
        headers[h.DLQ_GROUP] = group
    return Message(body=raw, id=_usable_id(message_id), headers=headers)


def _usable_id(candidate: str | None) -> str:
    # The producer's id when it is one eventwire could send on; a fresh one otherwise.
    if candidate is None or not 0 < len(candidate) <= MAX_ID:
        return new_message_id()
    try:
        Message(body=b"", id=candidate).validate()
    except Exception:  # noqa: BLE001 - a broken id is replaced, never trusted
        return new_message_id()
    return candidate


_CONTROL = dict.fromkeys(range(32), " ") | {127: " "}
