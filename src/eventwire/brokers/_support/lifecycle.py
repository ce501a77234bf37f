"""Broker layer: the lifecycle every adapter shares: connect once, async context, validation,
live subscriptions, and closing in the contract's order."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import ClassVar, Self

from eventwire.brokers._support.subscription import Opened, Subscription, close_all
from eventwire.core import headers as h
from eventwire.core.capabilities import BrokerProfile
from eventwire.core.contract import Health
from eventwire.core.errors import ClosedError, ConfigurationError
from eventwire.core.lifetime import ClosesOnExit
from eventwire.core.message import DEAD_LETTER_SUFFIX, Delivery, Message
from eventwire.core.url import BrokerURL


class BrokerBase(ClosesOnExit, ABC):
    """Shared shell of an adapter: subclasses fill in ``_connect``, ``_publish``, ``_subscribe``.

    It validates every message before any is sent, makes ``connect``/``aclose`` idempotent and
    keeps the URL's password out of ``repr``. ``_subscribe`` returns a ``Subscription``: the
    base refuses a closed broker, connects, and tracks it while it is open. ``aclose`` runs
    the contract's order: ``_flush_publishes`` (publishes already accepted are confirmed or
    fail), then every live subscription's ``aclose``, then ``_close_connection``, which runs
    even when the steps before it fail.
    """

    # Whether subscriptions skip replays marked for another group (see ``republish``).
    replays_by_mark: ClassVar[bool] = True

    def __init__(self, url: BrokerURL, profile: BrokerProfile) -> None:
        self._url = url
        self._profile = profile
        self._connected = False
        self._closed = False
        self._connect_lock = asyncio.Lock()
        self._live: set[Subscription] = set()

    @property
    def url(self) -> BrokerURL:
        return self._url

    @property
    def profile(self) -> BrokerProfile:
        return self._profile

    @property
    def closed(self) -> bool:
        return self._closed

    async def connect(self) -> None:
        async with self._connect_lock:
            if self._closed:
                raise ClosedError(f"{self._profile.name} broker at {self._url} is closed")
            if not self._connected:
                await self._connect()
                self._connected = True

    async def publish(self, topic: str, *messages: Message) -> None:
        validate_topic(topic)
        limit = self._profile.capabilities.max_body_bytes
        for message in messages:
            message.validate(max_body_bytes=limit)
        if self._closed:
            raise ClosedError(f"cannot publish to {topic!r}: the broker connection is closed")
        if not self._connected:
            await self.connect()
        if messages:
            await self._publish(topic, messages)

    def subscribe(
        self, topic: str, *, group: str | None = None, prefetch: int = 100
    ) -> AbstractAsyncContextManager[AsyncIterator[Delivery]]:
        validate_topic(topic)
        if group is not None:
            validate_topic(group, what="group")
        if prefetch < 1:
            raise ConfigurationError(f"prefetch must be at least 1, got {prefetch}")
        # Checked here for every adapter; ``_subscribe`` may assume an open broker.
        if self._closed:
            raise ClosedError(f"cannot subscribe to {topic!r}: the broker connection is closed")
        inner = Opened(
            self._subscribe(topic, group, prefetch),
            topic=topic,
            live=self._live,
            closed=self._is_closed,
            connect=self.connect,
        )
        if not self.replays_by_mark or topic.endswith(DEAD_LETTER_SUFFIX):
            # A dead letter of a replay keeps its marks; the DLQ readers must see all of them.
            return inner
        return _OwnDeliveries(inner, group)

    async def republish(self, topic: str, message: Message, *, group: str | None) -> None:
        """Publish ``message`` (a replayed dead letter, its id kept) for ``group`` only.

        It goes to the topic like any message, marked with ``x-eventwire-replay-group``; the
        subscriptions of every other group (and broadcast subscribers) ack it without handing
        it out, so groups that had processed it do not see it again. ``group=None`` (a dead
        letter of a broadcast subscriber) reaches every subscriber. Adapters that can hand a
        message to one group natively (memory, SQLite) override ``_republish`` and set
        ``replays_by_mark = False``: their subscriptions then ignore the mark, so a producer
        who forges it cannot hide a message from a group there. Adapters that drop a
        repeated message id override ``_republish`` so the replay is stored all the same.
        """
        if group is not None:
            validate_topic(group, what="group")
            message = message.with_headers(**{h.REPLAY_GROUP: group})
        validate_topic(topic)
        message.validate(max_body_bytes=self._profile.capabilities.max_body_bytes)
        if self._closed:
            raise ClosedError(f"cannot publish to {topic!r}: the broker connection is closed")
        if not self._connected:
            await self.connect()
        await self._republish(topic, message, group)

    async def _republish(self, topic: str, message: Message, group: str | None) -> None:
        await self._publish(topic, (message,))

    def _is_closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._connected:
            await self._aclose()

    async def _aclose(self) -> None:
        """The contract's order; an adapter overrides the steps, not this."""
        try:
            await self._flush_publishes()
            await close_all(self._live)
        finally:
            await self._close_connection()

    async def _flush_publishes(self) -> None:
        """Wait for publishes already under way (each bounded by its own deadline)."""

    async def _close_connection(self) -> None:
        """Release the connection and whatever else ``_connect`` started."""

    async def health(self) -> Health:
        if self._closed:
            return Health(ok=False, detail="closed")
        if not self._connected:
            return Health(ok=False, detail="not connected")
        return await self._health()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self._connected else "new"
        return f"<{type(self).__name__} {self._url} {state}>"

    @abstractmethod
    async def _connect(self) -> None: ...

    @abstractmethod
    async def _publish(self, topic: str, messages: tuple[Message, ...]) -> None: ...

    @abstractmethod
    def _subscribe(self, topic: str, group: str | None, prefetch: int) -> Subscription: ...

    async def _health(self) -> Health:
        return Health(ok=True, detail="connected")


class _OwnDeliveries:
    """``subscribe()``'s context manager around the adapter's: yields only the deliveries
    meant for this group; a replay addressed to another group is acked unseen."""

    __slots__ = ("_group", "_inner", "_iterator")

    def __init__(
        self, inner: AbstractAsyncContextManager[AsyncIterator[Delivery]], group: str | None
    ) -> None:
        self._inner = inner
        self._group = group
        self._iterator: AsyncIterator[Delivery] | None = None

    async def __aenter__(self) -> AsyncIterator[Delivery]:
        self._iterator = await self._inner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return await self._inner.__aexit__(exc_type, exc, tb)

    def __aiter__(self) -> AsyncIterator[Delivery]:
        return self

    def __getattr__(self, name: str) -> object:
        # Only for names this wrapper lacks: the adapter's own subscription stays inspectable.
        return getattr(self._iterator, name)

    async def __anext__(self) -> Delivery:
        iterator = self._iterator
        if iterator is None:
            raise RuntimeError("iterate inside `async with broker.subscribe(...)`")
        while True:
            delivery = await anext(iterator)
            target = delivery.message.headers.get(h.REPLAY_GROUP)
            if target is None or target == self._group:
                return delivery
            await delivery.ack()


_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def validate_topic(name: str, *, what: str = "topic") -> None:
    """Topic and group names portable to every broker: letters, digits, '.', '_', '-'."""
    if not name or len(name) > 200 or not set(name) <= _TOPIC_CHARS or name[0] == ".":
        raise ConfigurationError(
            f"{what} name {name!r} is not allowed: use 1-200 letters, digits, '.', '_' or '-', "
            "not starting with '.'"
        )
