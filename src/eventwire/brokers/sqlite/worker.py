"""Broker layer: the sqlite broker's store worker: one thread, the batched acks, the claims.

All database work of one broker object runs on one dedicated thread (stdlib ``sqlite3`` is
blocking), in submission order, so the event loop never blocks and an ack queued before a
release is always committed before it. Subscriptions and the broker both talk to the store
only through this worker; it also wakes the subscriptions of a topic when their work changed
(a nack due now, a release, a new dead letter), so none of them needs the broker itself.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from eventwire.brokers.sqlite.options import SQLiteSettings
from eventwire.brokers.sqlite.store import Claimed, Settle, SQLiteStore
from eventwire.core.errors import BrokerError, ClosedError
from eventwire.core.message import Message, dead_letter_topic
from eventwire.core.url import BrokerURL

T = TypeVar("T")
log = logging.getLogger("eventwire.brokers.sqlite")

_ACK_WINDOW = 0.002  # seconds acks wait to share one transaction
_ACK_RETRY = 0.5  # seconds before a failed ack batch is tried again


class StoreWorker:
    """The thread an ``SQLiteStore`` lives on, and the calls subscriptions make on it."""

    def __init__(self, settings: SQLiteSettings, url: BrokerURL) -> None:
        self.settings = settings
        self._url = url
        self._executor: ThreadPoolExecutor | None = None
        self._store: SQLiteStore | None = None
        self._acks: list[Settle] = []
        self._ack_timer: asyncio.TimerHandle | None = None
        self._ack_batches: set[asyncio.Future[None]] = set()
        self._listeners: dict[str, set[Callable[[], None]]] = {}

    @property
    def running(self) -> bool:
        """True from ``open`` until ``close`` finished: work may still be submitted."""
        return self._store is not None

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="eventwire-sqlite")
        try:
            future = self._executor.submit(SQLiteStore.open, self.settings)
            self._store = await asyncio.wrap_future(future)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        """Commit the acks still queued (a second round retries a batch that failed on a
        held lock), then close the store and stop the thread."""
        try:
            for _ in range(2):
                self._submit_acks()
                if self._ack_batches:
                    await asyncio.wait(list(self._ack_batches))
            if self._acks:
                log.warning("%d sqlite acks not committed: redelivered later", len(self._acks))
            if self._ack_timer is not None:
                self._ack_timer.cancel()
                self._ack_timer = None
            store, executor = self._store, self._executor
            if store is not None and executor is not None:
                await asyncio.wrap_future(executor.submit(store.close))
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=False)
            self._store = None

    async def run(
        self, work: Callable[[SQLiteStore], T], error: type[BrokerError] = BrokerError
    ) -> T:
        """``work(store)`` on the thread, after every ack queued before it; sqlite errors
        raised as ``error`` with the file named (and a hint when the write lock was held)."""
        store, executor = self._store, self._executor
        if store is None or executor is None:
            raise ClosedError(f"sqlite broker at {self._url} is closed")
        self._submit_acks()  # earlier acks commit first: the executor runs in order
        try:
            return await asyncio.wrap_future(executor.submit(work, store))
        except sqlite3.Error as exc:
            hint = (
                f" (another process held the write lock over busy_timeout="
                f"{self.settings.busy_timeout_ms} ms)"
                if is_busy(exc)
                else ""
            )
            raise error(f"sqlite broker file {str(self.settings.path)!r}: {exc}{hint}") from exc

    # -- who to wake when a topic has work ---------------------------------------------------

    def listen(self, topic: str, wake: Callable[[], None]) -> None:
        self._listeners.setdefault(topic, set()).add(wake)

    def unlisten(self, topic: str, wake: Callable[[], None]) -> None:
        self._listeners.get(topic, set()).discard(wake)

    def wake(self, topic: str) -> None:
        for wake in list(self._listeners.get(topic, ())):
            wake()

    # -- acks: batched over a few ms into one transaction -------------------------------------

    def enqueue_ack(self, settle: Settle) -> None:
        self._acks.append(settle)
        if self._ack_timer is None:
            loop = asyncio.get_running_loop()
            self._ack_timer = loop.call_later(_ACK_WINDOW, self._submit_acks)

    def _submit_acks(self) -> None:
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        if not self._acks or self._store is None or self._executor is None:
            return
        batch, self._acks = self._acks, []
        future = asyncio.wrap_future(self._executor.submit(self._store.ack, batch))
        self._ack_batches.add(future)
        future.add_done_callback(functools.partial(self._ack_done, batch))

    def _ack_done(self, batch: list[Settle], future: asyncio.Future[None]) -> None:
        self._ack_batches.discard(future)
        exc = None if future.cancelled() else future.exception()
        if exc is None:
            return
        if not self.running:
            log.warning("sqlite ack batch failed, messages will be redelivered: %s", exc)
            return
        # Tried again rather than dropped: a dropped ack leaves the claim held (heartbeats
        # keep renewing it) until the subscription ends, then the message comes back.
        log.warning("sqlite ack batch failed (%s); trying again", exc)
        self._acks[:0] = batch
        if self._ack_timer is None:
            loop = asyncio.get_running_loop()
            self._ack_timer = loop.call_later(_ACK_RETRY, self._submit_acks)

    # -- what a subscription does -------------------------------------------------------------

    def ephemeral_until(self) -> float:
        """How long a broadcast subscription's private group outlives missed heartbeats."""
        return time.time() + 3 * self.settings.lease

    async def join(self, topic: str, group: str, *, ephemeral_until: float | None) -> None:
        await self.run(lambda s: s.join(topic, group, ephemeral_until=ephemeral_until))

    async def claim(self, topic: str, group: str, consumer: str, limit: int) -> list[Claimed]:
        try:
            return await self.run(lambda s: s.claim(topic, group, consumer, limit))
        except BrokerError as exc:
            if not is_busy(exc.__cause__):
                raise
            # Other processes held the write lock past busy_timeout: poll again later
            # instead of failing the consumer over contention.
            log.info("sqlite claim on %s postponed: %s", topic, exc)
            return []

    async def nack(self, settle: Settle, delay: float) -> None:
        await self.run(lambda s: s.nack(settle, delay))
        if delay <= 0:
            self.wake(settle.topic)
        else:
            loop = asyncio.get_running_loop()
            loop.call_later(delay, functools.partial(self.wake, settle.topic))

    async def dead_letter(self, settle: Settle, dead: Message) -> None:
        await self.run(lambda s: s.dead_letter(settle, dead))
        self.wake(dead_letter_topic(settle.topic))

    async def heartbeat(self, topic: str, group: str, consumer: str, *, ephemeral: bool) -> None:
        await self.run(lambda s: s.heartbeat(topic, group, consumer, ephemeral))

    async def release(self, topic: str, group: str, consumer: str, *, leave: bool) -> None:
        await self.run(lambda s: s.release(topic, group, consumer, leave=leave))
        self.wake(topic)


def is_busy(exc: BaseException | None) -> bool:
    """True for sqlite's "database is locked/busy": another process held the write lock."""
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc)
    )
