"""Broker layer: the delivery queue, prefetch window and lifetime shared by Redis subscriptions."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Self

from eventwire.brokers._support.settling import QueuedAckDelivery
from eventwire.brokers.redis.connection import log
from eventwire.brokers.redis.errors import describe
from eventwire.brokers.redis.link import RedisLink
from eventwire.core.backoff import BackoffStreak
from eventwire.core.message import Delivery, Message


class RedisDelivery(QueuedAckDelivery):
    """A delivery whose settlement is carried out by its subscription (no-op once it closed)."""

    __slots__ = ("entry_id", "sub")

    def __init__(
        self, sub: Subscription, entry_id: bytes, message: Message, topic: str, attempt: int
    ) -> None:
        # Delivery.__init__ inlined (one per message); test_redis_units checks that it sets
        # exactly what the base's would, so a change to the base fails that test.
        self.message = message
        self.topic = topic
        self.attempt = attempt
        self.group = sub.group
        self._settled = None
        self._settling = False
        self.sub = sub
        self.entry_id = entry_id

    def _ack_now(self) -> None:
        self.sub.ack_now(self)

    async def _nack(self, delay: float | None) -> None:
        await self.sub.settle_nack(self, delay)

    async def _dead_letter(self, dead: Message) -> None:
        await self.sub.settle_dead_letter(self, dead)


class Subscription(ABC):
    """Feeds deliveries to ``async for`` and keeps at most ``prefetch`` of them unsettled.

    Background tasks admit deliveries while there is room; closing stops the iterator
    (``StopAsyncIteration``, never an error) and hands unsettled deliveries back. Redis is
    reached through ``link`` (the broker's ``RedisLink``), the topic's key is ``_key``.
    """

    def __init__(self, link: RedisLink, *, topic: str, group: str | None, prefetch: int) -> None:
        self._link = link
        self._key = link.stream_key(topic)
        self.topic = topic
        self.group = group
        self.prefetch = prefetch
        self.held: dict[bytes, RedisDelivery] = {}  # unsettled, queued or handed out
        self.closed = False
        # A deque plus one waiter future: cheaper per delivery than asyncio.Queue.
        self._ready: deque[RedisDelivery] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._room = asyncio.Event()
        self._room.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._close_lock = asyncio.Lock()

    @property
    def room(self) -> int:
        return self.prefetch - len(self.held)

    async def wait_room(self) -> None:
        """Until a batch worth reading is free: half the window (at least one slot), so a
        busy consumer is refilled in few large reads rather than many one-message reads."""
        wanted = max(1, self.prefetch // 2)
        while self.room < wanted and not self.closed:
            self._room.clear()
            await self._room.wait()

    def admit(self, delivery: RedisDelivery) -> bool:
        """Queue ``delivery`` unless the same entry is already held; False if skipped."""
        if self.closed or delivery.entry_id in self.held:
            return False
        self.held[delivery.entry_id] = delivery
        self._ready.append(delivery)
        self._wake()
        return True

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def forget(self, delivery: RedisDelivery) -> bool:
        """Drop ``delivery`` from the window; False if the subscription closed meanwhile."""
        if self.held.pop(delivery.entry_id, None) is not None:
            self._room.set()
        return not self.closed

    async def back_off(
        self, backoff: BackoffStreak, exc: BaseException, message: str, level: int = logging.WARNING
    ) -> None:
        """Log ``message`` (its ``%r`` is the topic, its ``%s`` the redacted error), then wait
        out the next backoff delay: the loops retry forever rather than end the subscription."""
        log.log(level, message, self.topic, describe(exc, self._link.url))
        await backoff.wait()

    def spawn(self, coro: Callable[[], Awaitable[None]], name: str) -> None:
        async def guarded() -> None:
            try:
                await coro()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a bug must not silently stop delivery: logged loudly
                log.exception("redis subscription task %s on %r stopped", name, self.topic)

        self._tasks.append(asyncio.create_task(guarded(), name=f"eventwire-redis-{name}"))

    # -- async context manager + iterator -------------------------------------------------

    async def open(self) -> Self:
        await self.start()
        return self

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Delivery:
        ready, held = self._ready, self.held
        while True:
            while ready:
                item = ready.popleft()
                if item.entry_id in held:  # skip ones handed back while queued
                    return item
            if self.closed:
                raise StopAsyncIteration
            if self._waiter is None or self._waiter.done():
                self._waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._waiter)

    async def aclose(self) -> int:
        """Stop the tasks and hand unsettled deliveries back (how many); idempotent."""
        async with self._close_lock:
            if self.closed:
                return 0
            self.closed = True
            returned = len(self.held)
            self._room.set()
            self._ready.clear()
            self._wake()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            try:
                await self.release()
            finally:
                self.held.clear()
            return returned

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def release(self) -> None:
        """Hand unsettled deliveries back to the broker after the tasks stopped."""

    @abstractmethod
    def ack_now(self, delivery: RedisDelivery) -> None:
        """Settle as acked, synchronously (anything slow is batched in the background)."""

    @abstractmethod
    async def settle_nack(self, delivery: RedisDelivery, delay: float | None) -> None: ...

    @abstractmethod
    async def settle_dead_letter(self, delivery: RedisDelivery, dead: Message) -> None: ...
