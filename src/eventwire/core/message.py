"""Core layer: the immutable ``Message`` and the settle-once ``Delivery`` handed to consumers."""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Final, TypeAlias

from eventwire.core.errors import MessageTooLargeError
from eventwire.core.headers import MAX_HEADER_VALUE, validate_headers

DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"


_Action: TypeAlias = Callable[[], Awaitable[None]]


def new_message_id() -> str:
    """A fresh, globally unique message id: 122 random bits (uuid4), not ordered by time.

    The same 32 hex digits as ``uuid.uuid4().hex`` (version and variant bits set), built
    from ``os.urandom`` directly: the ``UUID`` object took most of the 2 µs this cost on
    every published message. Nothing is pooled, so a forked process draws its own ids."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    return raw.hex()


def _frozen(headers: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(headers))


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One message as published and as delivered; ``body`` is never altered in transit."""

    body: bytes
    id: str = field(default_factory=new_message_id)
    key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = DEFAULT_CONTENT_TYPE
    correlation_id: str | None = None
    causation_id: str | None = None
    timestamp: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if not isinstance(self.body, bytes):
            # bytearray/memoryview would let a caller mutate a message after publishing it.
            object.__setattr__(self, "body", bytes(self.body))
        if not isinstance(self.headers, MappingProxyType):
            object.__setattr__(self, "headers", _frozen(self.headers))

    @classmethod
    def trusted(  # noqa: PLR0917 - positional on purpose: the per-delivery hot path
        cls,
        body: bytes,
        message_id: str,
        key: str | None,
        headers: Mapping[str, str],
        content_type: str,
        correlation_id: str | None,
        causation_id: str | None,
        timestamp: float,
    ) -> Message:
        """A Message from values that already have their final types (a ``bytes`` body,
        read-only ``headers``), without running ``__init__``: on an adapter's per-delivery
        path the constructor costs about as much as the rest of the decoding. The caller
        vouches for the types; written here, beside the fields, so the two cannot drift."""
        message = object.__new__(cls)
        _set = object.__setattr__
        _set(message, "body", body)
        _set(message, "id", message_id)
        _set(message, "key", key)
        _set(message, "headers", headers)
        _set(message, "content_type", content_type)
        _set(message, "correlation_id", correlation_id)
        _set(message, "causation_id", causation_id)
        _set(message, "timestamp", timestamp)
        return message

    def with_headers(self, **extra: str) -> Message:
        """A copy with ``extra`` headers merged over the existing ones."""
        return replace(self, headers={**self.headers, **extra})

    def validate(self, *, max_body_bytes: int | None = None) -> None:
        """Raise a ``MessageError`` if this message cannot be sent safely; called before sending."""
        if self.headers:
            validate_headers(self.headers)
        # Envelope fields travel as headers on several brokers, so they obey the same rules.
        # This runs for every published message: values of printable ASCII pass at once (no
        # CR, LF or NUL among them); any other goes through the full check, which says why.
        if not (
            _plain(self.id)
            and _plain(self.content_type)
            and (self.key is None or _plain(self.key))
            and (self.correlation_id is None or _plain(self.correlation_id))
            and (self.causation_id is None or _plain(self.causation_id))
        ):
            envelope = {"id": self.id, "content-type": self.content_type}
            if self.key is not None:
                envelope["key"] = self.key
            if self.correlation_id is not None:
                envelope["correlation-id"] = self.correlation_id
            if self.causation_id is not None:
                envelope["causation-id"] = self.causation_id
            validate_headers(envelope)
        if max_body_bytes is not None and len(self.body) > max_body_bytes:
            raise MessageTooLargeError(
                f"message {self.id} body is {len(self.body)} bytes; this broker accepts at most "
                f"{max_body_bytes}: store large payloads elsewhere and send a reference"
            )


def _plain(value: object) -> bool:
    """Whether ``value`` is a header value ``validate_headers`` accepts, by a cheap test
    that may say no to some it accepts (a tab, non-ASCII text): those get the full check."""
    return (
        type(value) is str
        and value.isascii()
        and value.isprintable()
        and len(value) <= MAX_HEADER_VALUE
    )


class Delivery(ABC):
    """A message handed to a consumer, to be settled exactly once.

    Settling is ``ack()``, ``nack(delay=...)`` or ``dead_letter(reason)``. The first call wins;
    later calls are no-ops, so a runtime and a handler may both try without double effects.
    A settle call made while another is still in flight returns at once without effect.
    Methods are coroutine-safe within one event loop; a ``Delivery`` is not thread-safe.
    A delivery never settled before its subscription closes goes back to the broker.
    """

    __slots__ = ("_settled", "_settling", "attempt", "group", "message", "topic")

    def __init__(self, *, message: Message, topic: str, attempt: int, group: str | None) -> None:
        self.message = message
        self.topic = topic
        self.attempt = attempt  # 1 on first delivery, +1 on every redelivery
        self.group = group
        self._settled: str | None = None
        # A flag, not an asyncio.Lock: one lock per message was measurable on the hot path.
        self._settling = False

    @property
    def settling(self) -> bool:
        """True while a settle call is talking to the broker."""
        return self._settling

    @property
    def settled(self) -> str | None:
        """``None`` while open, else how it was settled: "ack", "nack" or "dead-letter"."""
        return self._settled

    async def ack(self) -> None:
        """Confirm processing; the broker will not deliver this message to this group again."""
        await self._settle("ack", self._ack)

    async def nack(self, *, delay: float | None = None) -> None:
        """Return the message for redelivery (attempt + 1), after ``delay`` seconds if given."""
        if delay is not None and delay < 0:
            delay = 0.0

        async def do() -> None:
            await self._nack(delay)

        await self._settle("nack", do)

    async def dead_letter(self, reason: str, *, headers: Mapping[str, str] | None = None) -> None:
        """Move the message, body untouched, to ``dead_letter_topic(topic)`` with ``reason``."""
        from eventwire.core import headers as h

        extra = {
            h.DLQ_REASON: reason,
            h.DLQ_ORIGINAL_TOPIC: self.topic,
            h.DLQ_ATTEMPTS: str(self.attempt),
            **({h.DLQ_GROUP: self.group} if self.group else {}),
            **(headers or {}),
        }
        dead = self.message.with_headers(**extra)

        async def do() -> None:
            await self._dead_letter(dead)

        await self._settle("dead-letter", do)

    async def _settle(self, how: str, action: _Action) -> None:
        # A call made while another is in flight returns at once; if the first one fails the
        # delivery stays open and may be settled again.
        if self._settled is not None or self._settling:
            return
        self._settling = True
        try:
            await action()
        finally:
            self._settling = False
        self._settled = how

    @abstractmethod
    async def _ack(self) -> None: ...

    @abstractmethod
    async def _nack(self, delay: float | None) -> None: ...

    @abstractmethod
    async def _dead_letter(self, dead: Message) -> None:
        """Store ``dead`` (original body, merged headers) in the topic's dead-letter destination
        and remove the original from this group's queue, atomically where the broker allows."""

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} topic={self.topic!r} id={self.message.id!r} "
            f"attempt={self.attempt} settled={self._settled!r}>"
        )


DEAD_LETTER_SUFFIX: Final = ".dlq"
DEAD_LETTER_GROUP: Final = "eventwire-dlq"


def dead_letter_topic(topic: str) -> str:
    """Where dead letters of ``topic`` are kept; read it with group ``DEAD_LETTER_GROUP``."""
    return topic + DEAD_LETTER_SUFFIX
