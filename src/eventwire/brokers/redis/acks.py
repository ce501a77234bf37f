"""Broker layer: a Redis group member's acks, batched into one XACK per round trip."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from redis import exceptions as rex

from eventwire.brokers.redis.connection import log, retry_streak
from eventwire.brokers.redis.errors import TRANSIENT, describe
from eventwire.brokers.redis.link import RedisLink


class AckBatcher:
    """Entry ids to XACK, sent by a flusher task (``run``) in one XACK per round trip.

    ``add`` returns once the id is queued: if the process dies before the XACK the entry is
    simply redelivered (at-least-once).
    """

    def __init__(self, link: RedisLink, *, key: str, group: str, topic: str) -> None:
        self._link = link
        self._key = key
        self._group = group
        self._topic = topic
        self._limit = link.options.socket_timeout
        self._queued: list[bytes] = []
        self._sending: set[bytes] = set()  # in the XACK on the wire right now
        self._wake = asyncio.Event()

    def add(self, entry_id: bytes) -> None:
        queued = self._queued
        queued.append(entry_id)
        if len(queued) == 1:  # was empty: the flusher may be asleep (else it is due anyway)
            self._wake.set()

    def unsent(self) -> set[bytes]:
        """Ids queued or on the wire: acked by a handler, maybe still pending on Redis."""
        return set(self._queued) | self._sending

    async def run(self, closed: Callable[[], bool]) -> None:
        """Flush whenever ids are queued, until ``closed()``; failures are retried."""
        backoff = retry_streak(self._link.options.backoff_cap)
        while not closed():
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
                backoff.reset()
            except TRANSIENT as exc:
                log.debug("redis XACK on %r failed: %s", self._topic, describe(exc, self._link.url))
                self._wake.set()
                await backoff.wait()
            except rex.ResponseError as exc:
                # NOGROUP after a restart without persistence: nothing left to ack. Other
                # refusals drop the batch: those entries come back later (at-least-once).
                log.warning(
                    "redis refused XACK on %r: %s", self._topic, describe(exc, self._link.url)
                )
                self._queued.clear()

    async def flush(self) -> None:
        """XACK everything queued; on a failure the ids stay queued for the next try."""
        while self._queued:
            batch, self._queued = self._queued, []
            self._sending.update(batch)
            try:
                await self._link.bounded(
                    self._link.client.xack(self._key, self._group, *batch), self._limit
                )
            except BaseException:
                self._queued[:0] = batch  # keep them for the next try
                raise
            finally:
                self._sending.difference_update(batch)
