"""Broker layer: ``SQLiteBroker``, the durable embedded broker in one SQLite file.

All database work runs in one dedicated worker thread per broker object (stdlib ``sqlite3``
is blocking), in submission order, so the event loop never blocks and an ack queued before a
release is always committed before it. See ``settings`` for the URL, ``schema`` for the
tables and ``retention`` for what is deleted when.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

from eventwire.brokers._support.lifecycle import BrokerBase
from eventwire.brokers.sqlite import browse, retention
from eventwire.brokers.sqlite.settings import SQLiteSettings
from eventwire.brokers.sqlite.store import Claimed, Settle, SQLiteStore
from eventwire.brokers.sqlite.subscription import SQLiteSubscription
from eventwire.core.capabilities import BrokerProfile
from eventwire.core.contract import Health
from eventwire.core.errors import BrokerError, ClosedError, EventwireError, PublishError
from eventwire.core.message import Delivery, Message, dead_letter_topic
from eventwire.core.url import BrokerURL

T = TypeVar("T")
log = logging.getLogger("eventwire.brokers.sqlite")

_ACK_WINDOW = 0.002  # seconds acks wait to share one transaction
_ACK_RETRY = 0.5  # seconds before a failed ack batch is tried again


class SQLiteBroker(BrokerBase):
    """Publisher and subscriber over one SQLite file, shareable by processes on one machine."""

    def __init__(self, url: BrokerURL, profile: BrokerProfile) -> None:
        super().__init__(url, profile)
        self.settings = SQLiteSettings.from_url(url)  # a bad URL fails here, before any I/O
        self.closing = False
        self._executor: ThreadPoolExecutor | None = None
        self._store: SQLiteStore | None = None
        self._subscriptions: dict[str, set[SQLiteSubscription]] = {}
        self._acks: list[Settle] = []
        self._ack_timer: asyncio.TimerHandle | None = None
        self._ack_batches: set[asyncio.Future[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._outbox: list[tuple[str, tuple[Message, ...], asyncio.Future[None]]] = []
        self._drainer: asyncio.Task[None] | None = None

    # -- passive reads (dlq list, health): the file is never created or written ------------

    async def browse_dead_letters(self, topic: str, limit: int) -> list[Message] | None:
        """Dead letters of ``topic`` still in its DLQ (None: no such file or DLQ), read from a
        read-only connection: nothing is created, claimed or moved."""
        settings = self.settings

        def read() -> list[Message] | None:
            conn = browse.read_only(settings.path, settings.busy_timeout_ms)
            if conn is None:
                return None
            try:
                return browse.dead_letters(conn, topic, limit)
            finally:
                conn.close()

        try:
            return await asyncio.to_thread(read)
        except sqlite3.Error as exc:
            raise BrokerError(f"sqlite broker file {str(settings.path)!r}: {exc}") from exc

    async def probe(self) -> Health:
        """``eventwire health`` without side effects: a missing file is reported, not made."""
        settings = self.settings

        def check() -> Health:
            conn = browse.read_only(settings.path, settings.busy_timeout_ms)
            if conn is None:
                return Health(
                    ok=False, detail=f"no sqlite broker file at {settings.path} (nothing created)"
                )
            try:
                conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchall()
            finally:
                conn.close()
            return Health(ok=True, detail=f"sqlite file {settings.path}")

        try:
            return await asyncio.to_thread(check)
        except sqlite3.Error as exc:
            return Health(ok=False, detail=f"sqlite broker file {str(settings.path)!r}: {exc}")

    # -- lifecycle ---------------------------------------------------------------------------

    async def _connect(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="eventwire-sqlite")
        try:
            future = self._executor.submit(SQLiteStore.open, self.settings)
            self._store = await asyncio.wrap_future(future)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="eventwire-sqlite-sweep")

    async def _aclose(self) -> None:
        self.closing = True
        try:
            if self._drainer is not None:  # publishes already accepted are committed first
                await asyncio.wait([self._drainer])
            for subs in list(self._subscriptions.values()):
                for sub in list(subs):
                    await sub.stop()
            if self._sweeper is not None:
                self._sweeper.cancel()
                await asyncio.wait([self._sweeper])
            for _ in range(2):  # the second round retries a batch that failed (lock held)
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
            self.closing = False
            if self._executor is not None:
                self._executor.shutdown(wait=False)
            self._store = None

    async def _health(self) -> Health:
        try:
            await self._run(lambda s: s.call(lambda c: c.execute("SELECT 1").fetchall()))
        except EventwireError as exc:
            return Health(ok=False, detail=str(exc))
        return Health(ok=True, detail=f"sqlite file {self.settings.path}")

    # -- running work in the worker thread ---------------------------------------------------

    async def _run(
        self, work: Callable[[SQLiteStore], T], error: type[BrokerError] = BrokerError
    ) -> T:
        store, executor = self._store, self._executor
        if store is None or executor is None or (self.closed and not self.closing):
            raise ClosedError(f"sqlite broker at {self.url} is closed")
        self._submit_acks()  # earlier acks commit first: the executor runs in order
        try:
            return await asyncio.wrap_future(executor.submit(work, store))
        except sqlite3.Error as exc:
            hint = (
                f" (another process held the write lock over busy_timeout="
                f"{self.settings.busy_timeout_ms} ms)"
                if _is_busy(exc)
                else ""
            )
            raise error(f"sqlite broker file {str(self.settings.path)!r}: {exc}{hint}") from exc

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
        if self.closed and not self.closing:
            log.warning("sqlite ack batch failed, messages will be redelivered: %s", exc)
            return
        # Tried again rather than dropped: a dropped ack leaves the claim held (heartbeats
        # keep renewing it) until the subscription ends, then the message comes back.
        log.warning("sqlite ack batch failed (%s); trying again", exc)
        self._acks[:0] = batch
        if self._ack_timer is None:
            loop = asyncio.get_running_loop()
            self._ack_timer = loop.call_later(_ACK_RETRY, self._submit_acks)

    # -- publishing --------------------------------------------------------------------------

    async def _publish(self, topic: str, messages: tuple[Message, ...]) -> None:
        # Publishes made while a transaction is running share the next one (group commit):
        # concurrent single-message publishers cost one commit per batch, not per message.
        done = asyncio.get_running_loop().create_future()
        self._outbox.append((topic, messages, done))
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain_outbox(), name="eventwire-sqlite-out")
        await done

    replays_by_mark = False  # a replay is a claim of its group (store.redeliver)

    async def _republish(self, topic: str, message: Message, group: str | None) -> None:
        if group is None:  # every subscriber: a normal message, outside the dedup index
            work = functools.partial(
                SQLiteStore.publish, batches=[(topic, (message,))], dedup=False
            )
            await self._run(work, PublishError)
        else:
            await self._run(lambda s: s.redeliver(topic, group, message), PublishError)
        self._wake(topic)

    async def _drain_outbox(self) -> None:
        batch: list[tuple[str, tuple[Message, ...], asyncio.Future[None]]] = []
        try:
            while self._outbox:
                batch, self._outbox = self._outbox, []
                work = functools.partial(SQLiteStore.publish, batches=[(t, m) for t, m, _ in batch])
                try:
                    await self._run(work, PublishError)
                except Exception as exc:  # noqa: BLE001 - handed to every publisher in the batch
                    _settle_all(batch, exc)
                    continue
                _settle_all(batch, None)
                for topic in {t for t, _, _ in batch}:
                    self._wake(topic)
        finally:
            self._drainer = None
            # Only when cancelled: nobody must wait forever for a publish that never ran.
            interrupted = PublishError("publish interrupted: the sqlite broker was shut down")
            _settle_all(batch + self._outbox, interrupted)
            self._outbox = []

    def _wake(self, topic: str) -> None:
        for sub in self._subscriptions.get(topic, ()):
            sub.wake()

    # -- subscribing -------------------------------------------------------------------------

    def _subscribe(
        self, topic: str, group: str | None, prefetch: int
    ) -> AbstractAsyncContextManager[AsyncIterator[Delivery]]:
        if self.closed:
            raise ClosedError(f"cannot subscribe to {topic!r}: the broker connection is closed")
        return SQLiteSubscription(self, topic, group, prefetch)

    def register(self, sub: SQLiteSubscription) -> None:
        self._subscriptions.setdefault(sub.topic, set()).add(sub)

    def unregister(self, sub: SQLiteSubscription) -> None:
        self._subscriptions.get(sub.topic, set()).discard(sub)

    def ephemeral_until(self) -> float:
        return time.time() + 3 * self.settings.lease

    async def join(self, topic: str, group: str, *, ephemeral_until: float | None) -> None:
        await self._run(lambda s: s.join(topic, group, ephemeral_until=ephemeral_until))

    async def claim(self, topic: str, group: str, consumer: str, limit: int) -> list[Claimed]:
        try:
            return await self._run(lambda s: s.claim(topic, group, consumer, limit))
        except BrokerError as exc:
            if not _is_busy(exc.__cause__):
                raise
            # Other processes held the write lock past busy_timeout: poll again later
            # instead of failing the consumer over contention.
            log.info("sqlite claim on %s postponed: %s", topic, exc)
            return []

    async def nack(self, settle: Settle, delay: float) -> None:
        await self._run(lambda s: s.nack(settle, delay))
        if delay <= 0:
            self._wake(settle.topic)
        else:
            loop = asyncio.get_running_loop()
            loop.call_later(delay, functools.partial(self._wake, settle.topic))

    async def dead_letter(self, settle: Settle, dead: Message) -> None:
        await self._run(lambda s: s.dead_letter(settle, dead))
        self._wake(dead_letter_topic(settle.topic))

    async def heartbeat(self, topic: str, group: str, consumer: str, *, ephemeral: bool) -> None:
        await self._run(lambda s: s.heartbeat(topic, group, consumer, ephemeral))

    async def release(self, topic: str, group: str, consumer: str, *, leave: bool) -> None:
        await self._run(lambda s: s.release(topic, group, consumer, leave=leave))
        self._wake(topic)

    # -- retention ---------------------------------------------------------------------------

    async def run_retention(self) -> int:
        """Delete what retention allows now (it also runs every few seconds); returns count."""
        if not self._connected:
            await self.connect()
        keep, cap, lease = self.settings.retention, self.settings.max_messages, self.settings.lease

        def work(conn: sqlite3.Connection) -> int:
            return retention.sweep(conn, retention=keep, max_messages=cap, lease=lease)

        return await self._run(lambda s: s.call(work))

    def _checkpoint(self, conn: sqlite3.Connection) -> bool:
        wal = self.settings.path.with_name(self.settings.path.name + "-wal")
        return retention.checkpoint(conn, wal=wal, busy_timeout_ms=self.settings.busy_timeout_ms)

    async def _sweep_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.run_retention()
            except EventwireError as exc:
                log.warning("sqlite retention sweep failed: %s", exc)
            # A slow sweep (many topics, a large max_messages) spaces the next one out, so
            # retention never takes more than about 5% of the worker thread.
            took = loop.time() - started
            try:
                await self._run(lambda s: s.call(self._checkpoint))
            except EventwireError as exc:
                log.warning("sqlite WAL checkpoint failed: %s", exc)
            await asyncio.sleep(max(self.settings.sweep_interval, 20 * took))


def _settle_all(
    batch: list[tuple[str, tuple[Message, ...], asyncio.Future[None]]], exc: Exception | None
) -> None:
    for _, _, done in batch:
        if not done.done():
            if exc is None:
                done.set_result(None)
            else:
                done.set_exception(exc)


def _is_busy(exc: BaseException | None) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc)
    )
