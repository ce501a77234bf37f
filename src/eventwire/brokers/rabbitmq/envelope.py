"""Broker layer: eventwire ``Message`` <-> AMQP basic properties and headers (RabbitMQ adapter)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from pamqp.commands import Basic

from eventwire.core import headers as h
from eventwire.core.message import DEFAULT_CONTENT_TYPE, Message

PERSISTENT: Final = 2
_HASHED: Final = re.compile(r"~[0-9a-f]{24}$")  # settings._bounded shortened a long name
DELIVERY_COUNT: Final = "x-delivery-count"
# Headers the broker or this adapter adds; they never reach Message.headers.
_INTERNAL: Final = frozenset(
    {
        h.ATTEMPT,
        h.KEY,
        h.CAUSATION_ID,
        h.TIMESTAMP,
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


def encode(message: Message, *, attempt: int | None = None) -> Basic.Properties:
    """AMQP properties for ``message``: native slots where AMQP has them, headers otherwise."""
    headers: dict[str, Any] = dict(message.headers)
    # AMQP timestamps are whole seconds; the exact float travels as a header.
    headers[h.TIMESTAMP] = repr(message.timestamp)
    if message.key is not None:
        headers[h.KEY] = message.key
    if message.causation_id is not None:
        headers[h.CAUSATION_ID] = message.causation_id
    if attempt is not None:
        headers[h.ATTEMPT] = str(attempt)
    return Basic.Properties(
        content_type=message.content_type,
        delivery_mode=PERSISTENT,
        message_id=message.id,
        correlation_id=message.correlation_id,
        timestamp=datetime.fromtimestamp(int(message.timestamp), tz=UTC),
        headers=headers,
    )


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else str(value)


def _broker_dead_letter(deaths: object, user: dict[str, str]) -> None:
    """Name the reason when the broker itself dead-lettered the message (x-delivery-limit).

    Expiry from a retry queue also leaves an x-death entry; that one is a retry, not a death.
    """
    if not isinstance(deaths, list):
        return
    for death in deaths:
        if isinstance(death, dict) and death.get("reason") not in (None, "expired"):
            user[h.DLQ_REASON] = _text(death["reason"]).replace("_", "-")
            # The group queue's name "exchange:topic:group" is the reliable source: after a
            # delayed retry the routing key is that queue name, not the topic.
            parts = _text(death.get("queue", "")).rsplit(":", 2)
            if len(parts) == 3 and not _HASHED.search(parts[2]):
                user.setdefault(h.DLQ_ORIGINAL_TOPIC, parts[1])
                user.setdefault(h.DLQ_GROUP, parts[2])
            keys = death.get("routing-keys")
            if isinstance(keys, list) and keys and ":" not in _text(keys[0]):
                user.setdefault(h.DLQ_ORIGINAL_TOPIC, _text(keys[0]))
            return


def decode(body: bytes, properties: Basic.Properties, *, redelivered: bool) -> tuple[Message, int]:
    """The ``Message`` and its attempt (1-based) from a delivered AMQP message."""
    raw: Mapping[str, Any] = properties.headers or {}
    user = {k: _text(v) for k, v in raw.items() if k not in _INTERNAL}
    if h.DLQ_REASON not in user:
        _broker_dead_letter(raw.get("x-death"), user)
    stamp = raw.get(h.TIMESTAMP)
    if stamp is not None:
        timestamp = float(_text(stamp))
    elif properties.timestamp is not None:
        timestamp = properties.timestamp.timestamp()
    else:
        timestamp = 0.0
    key = raw.get(h.KEY)
    causation = raw.get(h.CAUSATION_ID)
    message = Message(
        body=body,
        id=properties.message_id or "",
        key=None if key is None else _text(key),
        headers=user,
        content_type=properties.content_type or DEFAULT_CONTENT_TYPE,
        correlation_id=properties.correlation_id,
        causation_id=None if causation is None else _text(causation),
        timestamp=timestamp,
    )
    base = int(_text(raw.get(h.ATTEMPT, "1")))
    count = raw.get(DELIVERY_COUNT)
    # Quorum queues count returns in x-delivery-count; classic (broadcast) queues only flag them.
    extra = int(count) if isinstance(count, int) else (1 if redelivered else 0)
    return message, base + extra
