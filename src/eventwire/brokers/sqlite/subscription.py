"""Broker layer: one sqlite subscription (claims, polling, heartbeats) and its deliveries."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import deque
from collections.abc import AsyncIterator

from eventwire.brokers.sqlite.store import Claimed, Settle
from eventwire.brokers.sqlite.worker import StoreWorker
from eventwire.core.errors import EventwireError
from eventwire.core.message import Delivery, Message

log = logging.getLogger("eventwire.brokers.sqlite")

# One claim transaction takes at most this many: short write locks, few bound parameters.
_MAX_CLAIM = 500


class SQLiteDelivery(Delivery):
    """A claimed message; settling it after its subscription closed does nothing."""

    __slots__ = ("_settle_key", "_subscription")

    def __init__(self, subscription: SQLiteSubscription, claimed: Claimed) -> None:
        super().__init__(
            message=claimed.message,
            topic=subscription.topic,
            attempt=claimed.attempt,
            group=subscription.group,
        )
        self._subscription = subscription
        self._settle_key = Settle(
            topic=subscription.topic,
            group=subscription.store_group,
            seq=claimed.seq,
            consumer=subscription.consumer,
            attempt=claimed.attempt,
        )

    async def _ack(self) -> None:
        if self._subscription.holds(self):
            # Acks are batched over a few ms; the at-least-once cost of losing a batch to a
            # crash is a redelivery, as on any broker whose acks are not confirmed.
            self._subscription.worker.enqueue_ack(self._settle_key)
            self._subscription.forget(self)

    async def _nack(self, delay: float | None) -> None:
        if self._subscription.holds(self):
            await self._subscription.worker.nack(self._settle_key, delay or 0.0)
            self._subscription.forget(self)  # only now: a failed nack may be retried

    async def _dead_letter(self, dead: Message) -> None:
        if self._subscription.holds(self):
            await self._subscription.worker.dead_letter(self._settle_key, dead)
            self._subscription.forget(self)


class SQLiteSubscription:
    """The ``Subscription``: ``open`` joins the group; iterating claims batches of up to
    ``prefetch``. It works through the broker's ``StoreWorker``."""

    def __init__(self, worker: StoreWorker, topic: str, group: str | None, prefetch: int) -> None:
        self.worker = worker
        self.topic = topic
        self.group = group
        self.prefetch = prefetch
        tag = uuid.uuid4().hex[:12]
        # Broadcast: a private group; '~' cannot appear in user group names.
        self.store_group = group if group is not None else f"~broadcast-{tag}"
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{tag}"
        self._buffer: deque[SQLiteDelivery] = deque()
        self._unsettled: set[SQLiteDelivery] = set()
        self._wake = asyncio.Event()
        self._stopped = False
        self._entered = False
        self._heartbeat: asyncio.Task[None] | None = None

    @property
    def ephemeral(self) -> bool:
        return self.group is None

    async def open(self) -> AsyncIterator[Delivery]:
        until = self.worker.ephemeral_until() if self.ephemeral else None
        await self.worker.join(self.topic, self.store_group, ephemeral_until=until)
        self._entered = True
        self.worker.listen(self.topic, self.wake)
        self._heartbeat = asyncio.create_task(self._beat(), name=f"eventwire-sqlite-{self.topic}")
        return self

    def __aiter__(self) -> SQLiteSubscription:
        return self

    async def __anext__(self) -> Delivery:
        interval = self.worker.settings.min_poll
        while True:
            if self._stopped:
                raise StopAsyncIteration
            if self._buffer:
                return self._buffer.popleft()
            self._wake.clear()  # before polling, so a wake during the poll is not lost
            if len(self._unsettled) < self.prefetch:
                want = min(self.prefetch - len(self._unsettled), _MAX_CLAIM)
                try:
                    claimed = await self.worker.claim(
                        self.topic, self.store_group, self.consumer, want
                    )
                except EventwireError:
                    if self._stopped:  # the broker closed under this claim: just end
                        raise StopAsyncIteration from None
                    raise
                if self._stopped:
                    raise StopAsyncIteration  # aclose() releases what this claim took
                if claimed:
                    for item in claimed:
                        delivery = SQLiteDelivery(self, item)
                        self._unsettled.add(delivery)
                        self._buffer.append(delivery)
                    interval = self.worker.settings.min_poll
                    continue
                # Other processes' publishes are only seen by polling: back off while idle.
                interval = min(interval * 2, self.worker.settings.max_poll)
            try:
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def wake(self) -> None:
        self._wake.set()

    def holds(self, delivery: SQLiteDelivery) -> bool:
        """False once ``delivery`` went back to the broker with aclose(): settling is a no-op."""
        return delivery in self._unsettled

    def forget(self, delivery: SQLiteDelivery) -> None:
        self._unsettled.discard(delivery)
        self._wake.set()  # a prefetch slot is free

    async def aclose(self) -> int:
        """End iteration and return every unsettled delivery to the group (idempotent); the
        count of those returned (their claims are released, or their leases run out)."""
        if self._stopped:
            return 0
        self._stopped = True
        self._wake.set()
        returned = len(self._unsettled)
        self._unsettled.clear()
        self._buffer.clear()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if not self._entered:
            return returned
        self.worker.unlisten(self.topic, self.wake)
        if not self.worker.running:  # the broker closed: its leases run out instead
            return returned
        try:
            await self.worker.release(
                self.topic, self.store_group, self.consumer, leave=self.ephemeral
            )
        except EventwireError as exc:
            # The leases run out instead; nothing is lost, only delayed.
            log.warning("could not return claims of %s to the broker: %s", self.topic, exc)
        return returned

    async def _beat(self) -> None:
        period = self.worker.settings.lease / 3
        while not self._stopped:
            await asyncio.sleep(period)
            if not self._unsettled and not self.ephemeral:
                continue  # no claims to keep: spare the write lock
            try:
                await self.worker.heartbeat(
                    self.topic, self.store_group, self.consumer, ephemeral=self.ephemeral
                )
            except EventwireError as exc:
                log.warning("lease heartbeat for %s failed: %s", self.topic, exc)
