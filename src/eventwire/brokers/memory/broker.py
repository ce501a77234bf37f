"""Broker layer: ``MemoryBroker``, an in-process broker with groups, redelivery and dead letters.

``memory://NAME`` clients in one process share a hub (state.py) like clients of one server;
``memory://`` is private to its client. ``?retention=N`` bounds each topic's log (default
1,000,000 messages; the first client of a named hub sets it). Nothing survives the process.

Fast paths avoid per-message tasks and locks: a subscription takes straight from its group's
cursor and waits on one future only when there is nothing to take.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from eventwire.brokers._support.lifecycle import BrokerBase
from eventwire.brokers._support.subscription import Subscription
from eventwire.brokers.memory.state import (
    DEFAULT_RETENTION,
    Group,
    Hub,
    Item,
    forget_hub,
    hub_for,
)
from eventwire.core.capabilities import BrokerProfile
from eventwire.core.contract import Health
from eventwire.core.errors import ClosedError, ConfigurationError
from eventwire.core.message import Delivery, Message, dead_letter_topic
from eventwire.core.url import BrokerURL

__all__ = ["MemoryBroker", "forget_hub"]

# Yield to the loop every so often on hot paths, so a consumer draining a backlog (or a
# publisher in a tight loop) cannot starve its competitors and the rest of the program.
_YIELD_EVERY = 16


class MemoryBroker(BrokerBase):
    """An in-process broker client; ``async with open_broker("memory://app") as broker``."""

    def __init__(self, url: BrokerURL, profile: BrokerProfile) -> None:
        super().__init__(url, profile)
        self._retention = _retention(url)
        self._hub: Hub | None = None
        self._publishes = 0

    @property
    def hub(self) -> Hub:
        if self._hub is None:
            raise ClosedError(f"memory broker {self.url} is not connected")
        return self._hub

    async def _connect(self) -> None:
        self._hub = hub_for(self.url.host, self._retention)

    async def _publish(self, topic: str, messages: tuple[Message, ...]) -> None:
        self.hub.topic(topic).append(messages)
        self._publishes += 1
        if self._publishes % _YIELD_EVERY == 0:
            await asyncio.sleep(0)

    replays_by_mark = False  # a replay is handed to its group directly

    async def _republish(self, topic: str, message: Message, group: str | None) -> None:
        if group is None:
            await self._publish(topic, (message,))
            return
        self.hub.topic(topic).durable_group(group).requeue([(message, 1)])

    def _subscribe(self, topic: str, group: str | None, prefetch: int) -> Subscription:
        return _Subscription(lambda: self.hub, topic, group, prefetch)

    async def _health(self) -> Health:
        return Health(ok=True, detail=f"in-process broker {self.url.host or '(private)'}")


def _retention(url: BrokerURL) -> int:
    raw = url.query.get("retention")
    if raw is None:
        return DEFAULT_RETENTION
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigurationError(
            f"memory URL {url}: retention must be a positive number of messages, got {raw!r}"
        )
    return value


class _Subscription:
    """One ``subscribe()``: the ``Subscription``, its iterator, and a member of its group."""

    __slots__ = (
        "_closed",
        "_delivered",
        "_group",
        "_group_name",
        "_hub",
        "_hub_of",
        "_in_flight",
        "_loop",
        "_prefetch",
        "_topic",
        "_waiter",
    )

    def __init__(
        self, hub_of: Callable[[], Hub], topic: str, group: str | None, prefetch: int
    ) -> None:
        self._hub_of = hub_of  # the broker's hub, there once it is connected
        self._hub: Hub | None = None
        self._topic = topic
        self._group_name = group
        self._prefetch = prefetch
        self._group: Group | None = None
        self._in_flight: set[_MemoryDelivery] = set()
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._delivered = 0

    async def open(self) -> AsyncIterator[Delivery]:
        if self._group is not None:
            raise RuntimeError("a subscription can be entered only once")
        hub = self._hub = self._hub_of()
        topic = hub.topic(self._topic)
        name = self._group_name
        self._group = topic.durable_group(name) if name else topic.broadcast_group()
        self._group.members.add(self)
        self._loop = asyncio.get_running_loop()
        return self

    async def aclose(self) -> int:
        return self.close()

    def close(self) -> int:
        """Stop delivering and give every unsettled delivery back to the group (how many)."""
        if self._closed:
            return 0
        self._closed = True
        returned: list[Item] = []
        group = self._group
        if group is not None:
            group.members.discard(self)
            for delivery in sorted(self._in_flight, key=lambda d: d.seq):
                group.release(self, delivery.message)
                returned.append((delivery.message, delivery.attempt + 1))
            self._in_flight.clear()
            if group.name is None:
                group.topic.broadcast.discard(group)  # a broadcast group ends with its member
            elif returned:
                group.return_unsettled(returned)
        self.wake()
        return len(returned)

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> AsyncIterator[Delivery]:
        return self

    async def __anext__(self) -> Delivery:
        group = self._group
        if group is None:
            raise RuntimeError("iterate inside `async with broker.subscribe(...)`")
        while True:
            if self._closed:
                raise StopAsyncIteration
            if len(self._in_flight) < self._prefetch:
                item = group.take(self)
                if item is not None:
                    self._delivered += 1
                    delivery = _MemoryDelivery(self, item, group.name, self._delivered)
                    self._in_flight.add(delivery)
                    if self._delivered % _YIELD_EVERY == 0:
                        await asyncio.sleep(0)
                        if self._closed:  # closed while yielding: the delivery went back
                            raise StopAsyncIteration
                    return delivery
            assert self._loop is not None
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    def settle(self, delivery: _MemoryDelivery) -> Group | None:
        """Take ``delivery`` out of flight; None if it was already given back (a no-op)."""
        if delivery not in self._in_flight:
            return None
        self._in_flight.discard(delivery)
        group = self._group
        assert group is not None
        group.release(self, delivery.message)
        self.wake()  # a prefetch slot is free again
        return group

    def dead_letter(self, dead: Message) -> None:
        assert self._hub is not None  # settled deliveries come from an open subscription
        self._hub.topic(dead_letter_topic(self._topic)).append((dead,))


class _MemoryDelivery(Delivery):
    __slots__ = ("seq", "subscription")

    def __init__(self, subscription: _Subscription, item: Item, group: str | None, seq: int):
        super().__init__(message=item[0], topic=subscription._topic, attempt=item[1], group=group)
        self.subscription = subscription
        self.seq = seq

    async def _ack(self) -> None:
        self.subscription.settle(self)

    async def _nack(self, delay: float | None) -> None:
        group = self.subscription.settle(self)
        if group is not None:
            group.requeue(((self.message, self.attempt + 1),), delay=delay)

    async def _dead_letter(self, dead: Message) -> None:
        if self.subscription.settle(self) is not None:
            self.subscription.dead_letter(dead)
