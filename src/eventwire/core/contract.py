"""Core layer: the broker contract every adapter implements and the conformance suite proves.

Semantics every adapter keeps (the suite checks each one its profile claims):

* ``publish(topic, *messages)`` returns once the broker has confirmed every message (on
  profiles with ``publish_confirms``); if it raises, treat every message of that call as not
  sent. Messages are validated first: a bad header or oversize body raises a ``MessageError``
  and nothing of that call is sent.
* ``subscribe(topic, group=...)`` is an async context manager. When ``__aenter__`` returns the
  subscription exists on the broker: anything published afterwards reaches it. Subscribers
  sharing ``group`` compete; ``group=None`` broadcasts to each subscriber. A new group starts
  at the oldest retained message on profiles that claim ``replay``, else at the next one.
* At most ``prefetch`` deliveries are unsettled at once per subscription.
* Leaving the ``async with`` stops delivery and returns unsettled deliveries to the broker
  (they are redelivered to the group, attempt + 1); settling after that is a no-op.
* ``aclose()`` ends every subscription: iterators stop (``StopAsyncIteration``) rather than
  raise, even while a handler is still holding a delivery, and publishers flush first.
* Objects are used from one event loop; they are not thread-safe.
* Dead letters of ``topic`` are kept in ``dead_letter_topic(topic)``; reading it with group
  ``DEAD_LETTER_GROUP`` sees every dead letter made since the source group was first subscribed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from eventwire.core.capabilities import BrokerProfile
from eventwire.core.message import Delivery, Message
from eventwire.core.url import BrokerURL


@runtime_checkable
class Publisher(Protocol):
    """Sends messages to topics; ``publish`` returns when the broker has confirmed them."""

    async def publish(self, topic: str, *messages: Message) -> None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Subscriber(Protocol):
    """Receives deliveries from topics, alone (broadcast) or as a member of a group."""

    def subscribe(
        self, topic: str, *, group: str | None = None, prefetch: int = 100
    ) -> AbstractAsyncContextManager[AsyncIterator[Delivery]]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Health:
    """A broker connection's health for ``/healthz`` and ``eventwire health``."""

    ok: bool
    detail: str


@runtime_checkable
class Broker(Publisher, Subscriber, Protocol):
    """A connection to one broker: a publisher and a subscriber sharing one connection."""

    @property
    def profile(self) -> BrokerProfile: ...

    @property
    def url(self) -> BrokerURL: ...

    async def connect(self) -> None:
        """Open the connection; idempotent. Raises ``BrokerError`` if the broker is unreachable."""
        ...

    async def health(self) -> Health: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
