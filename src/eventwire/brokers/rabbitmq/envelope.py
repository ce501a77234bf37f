"""Broker layer: eventwire ``Message`` <-> AMQP basic properties and headers (RabbitMQ adapter).

``decode`` is total: whatever a producer put in the properties, it returns a ``Message`` and
an attempt, never raises. What it does with fields it cannot trust:

- ``x-eventwire-timestamp`` that is not a finite number of seconds between 0 and year 9999
  (``inf``, ``nan``, ``1e300``, text) is ignored: the AMQP timestamp is used, else 0.
- ``x-eventwire-attempt`` is read only from eventwire's own retry path (``via_retry``: the
  broker says the message came through the delay exchanges), clamped to 1..``MAX_ATTEMPT``;
  a producer's value is ignored. Returns add what the broker counts: ``x-delivery-count``
  (quorum queues), read only when the broker flags the delivery as redelivered.
- A missing ``message_id`` becomes ``amqp-<sha256 of body and properties>``, the broker's own
  headers (delivery count, x-death) left out: the same id at every redelivery, retry and in
  the DLQ; distinct messages get distinct ids, byte-identical ones share it.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from pamqp.commands import Basic

from eventwire.brokers.rabbitmq import delays
from eventwire.brokers.rabbitmq.options import bounded
from eventwire.core import headers as h
from eventwire.core.message import DEFAULT_CONTENT_TYPE, Message

PERSISTENT: Final = 2
MAX_ATTEMPT: Final = 1_000_000
_LAST_SECOND: Final = 253_402_300_799.0  # 9999-12-31T23:59:59Z
_AMQP_STAMP_MAX: Final = 0xFFFFFFFF  # pamqp reads larger AMQP timestamps as milliseconds
_HASHED: Final = re.compile(r"~[0-9a-f]{24}$")  # settings.bounded shortened a long name
_RETRY_QUEUE: Final = re.compile(r"\.delay-\d+$|:retry-\d+ms$")
_DELAY_KEY: Final = re.compile(rf"(?:[01]\.){{{delays.LEVELS}}}q[0-9a-f]{{32}}$")
DELIVERY_COUNT: Final = "x-delivery-count"
UNREADABLE: Final = "unreadable envelope"
# Headers the broker adds when it returns or dead-letters a message.
_BROKER_ADDED: Final = frozenset(
    {
        DELIVERY_COUNT,
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
    }
)
# Headers the broker or this adapter adds; they never reach Message.headers. Keeping x-death
# out of every copy the adapter publishes also keeps RabbitMQ's dead-letter cycle detection
# from dropping retried messages (celery/celery#9867).
_INTERNAL: Final = _BROKER_ADDED | {h.ATTEMPT, h.KEY, h.CAUSATION_ID, h.TIMESTAMP}


def _short(value: str | None) -> str | None:
    # AMQP short strings hold 255 bytes; a longer value would fail inside the client.
    return None if value is None else bounded(value)


def encode(message: Message, *, attempt: int | None = None) -> Basic.Properties:
    """AMQP properties for ``message``: native slots where AMQP has them, headers otherwise.

    Total for any ``Message`` (a hostile timestamp or a long id cannot make it raise), so a
    dead letter can always be written.
    """
    headers: dict[str, Any] = dict(message.headers)
    # AMQP timestamps are whole seconds; the exact float travels as a header.
    headers[h.TIMESTAMP] = repr(message.timestamp)
    if message.key is not None:
        headers[h.KEY] = message.key
    if message.causation_id is not None:
        headers[h.CAUSATION_ID] = message.causation_id
    if attempt is not None:
        headers[h.ATTEMPT] = str(attempt)
    stamp = message.timestamp
    return Basic.Properties(
        content_type=_short(message.content_type),
        delivery_mode=PERSISTENT,
        message_id=_short(message.id),
        correlation_id=_short(message.correlation_id),
        timestamp=(
            datetime.fromtimestamp(int(stamp), tz=UTC)
            if math.isfinite(stamp) and 0 <= stamp <= _AMQP_STAMP_MAX
            else None
        ),
        headers=headers,
    )


def _text(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "backslashreplace")
    return value if isinstance(value, str) else str(value)


def _broker_dead_letter(deaths: object, problems: tuple[str, ...], user: dict[str, str]) -> None:
    """Name the reason when the broker itself dead-lettered the message.

    ``delivery_limit``: too many returns; ``rejected``: the adapter found the envelope
    unreadable and let the broker move it, bytes untouched; ``expired``: a producer's
    per-message TTL ran out in the group queue. Expiry from a delay level also leaves an
    x-death entry; that one is a retry, not a death.
    """
    if not isinstance(deaths, list):
        return
    for death in deaths:
        if not isinstance(death, dict) or death.get("reason") is None:
            continue
        reason = _text(death["reason"])
        if reason == "expired" and _RETRY_QUEUE.search(_text(death.get("queue", ""))):
            continue  # waited in a delay level (or a retry queue of older versions)
        if reason == "rejected":
            detail = "; ".join(problems) or "the consumer could not read it"
            user[h.DLQ_REASON] = f"{UNREADABLE}: {detail}"
        else:
            user[h.DLQ_REASON] = reason.replace("_", "-")
        # The group queue's name "exchange:topic:group" is the reliable source: after a
        # delayed retry the routing key is not the topic.
        parts = _text(death.get("queue", "")).rsplit(":", 2)
        if len(parts) == 3 and not _HASHED.search(parts[2]):
            user.setdefault(h.DLQ_ORIGINAL_TOPIC, parts[1])
            user.setdefault(h.DLQ_GROUP, parts[2])
        keys = death.get("routing-keys")
        if isinstance(keys, list) and keys and not _DELAY_KEY.match(_text(keys[0])):
            user.setdefault(h.DLQ_ORIGINAL_TOPIC, _text(keys[0]))
        return


def _timestamp(stamp: object, properties: Basic.Properties) -> float:
    if stamp is not None:
        try:
            value = float(_text(stamp))
        except ValueError:
            value = math.nan
        if math.isfinite(value) and 0 <= value <= _LAST_SECOND:
            return value
    amqp = properties.timestamp
    return amqp.timestamp() if isinstance(amqp, datetime) else 0.0


def _count(value: object, default: int) -> int:
    """A non-negative whole count from a header value, ``default`` when it is none."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return max(0, min(value, MAX_ATTEMPT))
    text = _text(value).strip() if value is not None else ""
    if text.isascii() and text.isdigit() and len(text) <= len(str(MAX_ATTEMPT)):
        return min(int(text), MAX_ATTEMPT)
    return default


def derived_id(body: bytes, properties: Basic.Properties) -> str:
    """A stable id for a message published without one (see the module docstring)."""
    digest = hashlib.sha256(body)
    for name in Basic.Properties.__slots__:
        if name in ("headers", "expiration"):  # the broker drops expiration on dead-lettering
            continue
        digest.update(f"\x00{name}={getattr(properties, name, None)!r}".encode())
    for key, value in (properties.headers or {}).items():
        if key not in _BROKER_ADDED:
            digest.update(f"\x00{key!r}={value!r}".encode("utf-8", "backslashreplace"))
    return "amqp-" + digest.hexdigest()[:32]


def decode(
    body: bytes,
    properties: Basic.Properties,
    *,
    redelivered: bool,
    via_retry: bool = False,
    dead_letters: bool = False,
    problems: tuple[str, ...] = (),
) -> tuple[Message, int]:
    """The ``Message`` and its attempt (1-based) from a delivered AMQP message.

    ``via_retry``: the broker delivered it from the adapter's own retry path, so its attempt
    header is ours. ``dead_letters``: read from a DLQ, where the broker's x-death names why.
    ``problems``: what the frame decoder could not read (``frames``).
    """
    raw: Mapping[str, Any] = properties.headers if isinstance(properties.headers, dict) else {}
    user = {_text(k): _text(v) for k, v in raw.items() if k not in _INTERNAL}
    if dead_letters and h.DLQ_REASON not in user:
        _broker_dead_letter(raw.get("x-death"), problems, user)
        if problems:  # even when x-death itself could not be read
            user.setdefault(h.DLQ_REASON, f"{UNREADABLE}: {'; '.join(problems)}")
    key = raw.get(h.KEY)
    causation = raw.get(h.CAUSATION_ID)
    message = Message(
        body=body,
        id=_text(properties.message_id) if properties.message_id else derived_id(body, properties),
        key=None if key is None else _text(key),
        headers=user,
        content_type=_text(properties.content_type or DEFAULT_CONTENT_TYPE),
        correlation_id=(
            None if properties.correlation_id is None else _text(properties.correlation_id)
        ),
        causation_id=None if causation is None else _text(causation),
        timestamp=_timestamp(raw.get(h.TIMESTAMP), properties),
    )
    base = max(1, _count(raw.get(h.ATTEMPT), 1)) if via_retry else 1
    # Quorum queues count returns in x-delivery-count; classic (broadcast) queues only flag
    # them. Unflagged, a delivery-count header can only be the producer's.
    extra = _count(raw.get(DELIVERY_COUNT), 1) if redelivered else 0
    return message, min(base + extra, MAX_ATTEMPT)
