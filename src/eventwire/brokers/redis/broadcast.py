"""Broker layer: a Redis Streams subscription without a group (XREAD from the subscribe point)."""

from __future__ import annotations

import asyncio
from logging import ERROR
from typing import cast

from redis import exceptions as rex

from eventwire.brokers._support.envelope import EnvelopeError
from eventwire.brokers.redis.connection import log, retry_streak
from eventwire.brokers.redis.envelope import from_fields, stream_entries
from eventwire.brokers.redis.errors import TRANSIENT
from eventwire.brokers.redis.link import RedisLink
from eventwire.brokers.redis.subscription import RedisDelivery, Subscription
from eventwire.core.message import Message


class BroadcastSubscription(Subscription):
    """Reads every entry added after ``open`` returned; nothing is kept on the server.

    ack is local bookkeeping; nack hands the same entry out again from this process (after
    ``delay``), attempt + 1; dead_letter writes to the dead-letter stream. Entries are read
    by id, so a reconnect resumes exactly where reading stopped (unless trimmed meanwhile).
    """

    def __init__(self, link: RedisLink, topic: str, prefetch: int) -> None:
        super().__init__(link, topic=topic, group=None, prefetch=prefetch)
        self._last: bytes | str = "0-0"
        self._timers: set[asyncio.TimerHandle] = set()

    async def start(self) -> None:
        async def last_id() -> None:
            newest = await self._link.bounded(
                self._link.client.xrevrange(self._key, count=1), limit
            )
            self._last = cast("bytes", newest[0][0]) if newest else "0-0"

        limit = self._link.options.socket_timeout
        await self._link.call(last_id, f"subscribing to {self.topic!r}")
        self.spawn(self._read_loop, "broadcast")

    async def _read_loop(self) -> None:
        client = self._link.client
        backoff = retry_streak(self._link.options.backoff_cap)
        block_ms = int(self._link.options.block * 1000)
        while not self.closed:
            await self.wait_room()
            if self.closed:
                return
            try:
                reply = await self._link.bounded(
                    client.xread({self._key: self._last}, count=self.room, block=block_ms),
                    self._link.read_limit,
                )
                backoff.reset()
            except rex.ResponseError as exc:  # e.g. the key is not a stream: loud, retried
                await self.back_off(backoff, exc, "redis refused the read on %r: %s", ERROR)
                continue
            except TRANSIENT as exc:
                await self.back_off(backoff, exc, "redis read on %r failed (%s); reconnecting")
                continue
            for entry_id, fields in stream_entries(reply):
                self._last = entry_id
                try:
                    message = from_fields(fields)
                except EnvelopeError as exc:
                    log.warning(
                        "redis entry %r on %r is not an eventwire message: %s",
                        entry_id,
                        self.topic,
                        exc,
                    )
                    continue
                self.admit(RedisDelivery(self, entry_id, message, self.topic, 1))

    def ack_now(self, delivery: RedisDelivery) -> None:
        self.forget(delivery)

    async def settle_nack(self, delivery: RedisDelivery, delay: float | None) -> None:
        if not self.forget(delivery):
            return
        again = RedisDelivery(
            self, delivery.entry_id, delivery.message, self.topic, delivery.attempt + 1
        )

        if not delay:
            self.admit(again)
            return

        def readmit() -> None:
            self._timers.discard(timer)  # fired: a long-lived subscription must not pile them up
            self.admit(again)

        timer = asyncio.get_running_loop().call_later(delay, readmit)
        self._timers.add(timer)

    async def settle_dead_letter(self, delivery: RedisDelivery, dead: Message) -> None:
        # Even after the subscription closed: nothing on the server would bring this entry
        # back to a group-less reader, so skipping the write would lose the dead letter.
        await self._link.move_to_dead_letter(self.topic, None, delivery.entry_id, dead)
        self.forget(delivery)

    async def release(self) -> None:
        for timer in self._timers:
            timer.cancel()
