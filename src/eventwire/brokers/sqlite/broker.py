"""Broker layer: ``SQLiteBroker``, the durable embedded broker in one SQLite file.

All database work runs on the broker's ``worker.StoreWorker`` (one thread, in submission
order); the broker adds publishing (group commit), the retention sweeps and the lifecycle.
See ``options`` for the URL, ``schema`` for the tables and ``retention`` for what is
deleted when.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Callable
from typing import TypeVar

from eventwire.brokers._support.lifecycle import BrokerBase
from eventwire.brokers._support.subscription import Subscription
from eventwire.brokers.sqlite import browse, retention
from eventwire.brokers.sqlite.options import SQLiteSettings
from eventwire.brokers.sqlite.store import SQLiteStore
from eventwire.brokers.sqlite.subscription import SQLiteSubscription
from eventwire.brokers.sqlite.worker import StoreWorker
from eventwire.core.capabilities import BrokerProfile
from eventwire.core.contract import Health
from eventwire.core.errors import BrokerError, EventwireError, PublishError
from eventwire.core.message import Message
from eventwire.core.url import BrokerURL

T = TypeVar("T")
log = logging.getLogger("eventwire.brokers.sqlite")


class SQLiteBroker(BrokerBase):
    """Publisher and subscriber over one SQLite file, shareable by processes on one machine."""

    def __init__(self, url: BrokerURL, profile: BrokerProfile) -> None:
        super().__init__(url, profile)
        self.settings = SQLiteSettings.from_url(url)  # a bad URL fails here, before any I/O
        self._worker = StoreWorker(self.settings, url)
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
        await self._worker.open()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="eventwire-sqlite-sweep")

    async def _flush_publishes(self) -> None:
        if self._drainer is not None:  # publishes already accepted are committed first
            await asyncio.wait([self._drainer])

    async def _close_connection(self) -> None:
        try:
            if self._sweeper is not None:
                self._sweeper.cancel()
                await asyncio.wait([self._sweeper])
        finally:
            await self._worker.close()  # acks still queued are committed, then the thread ends

    async def _health(self) -> Health:
        try:
            await self._run(lambda s: s.call(lambda c: c.execute("SELECT 1").fetchall()))
        except EventwireError as exc:
            return Health(ok=False, detail=str(exc))
        return Health(ok=True, detail=f"sqlite file {self.settings.path}")

    async def _run(
        self, work: Callable[[SQLiteStore], T], error: type[BrokerError] = BrokerError
    ) -> T:
        return await self._worker.run(work, error)

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
        self._worker.wake(topic)

    # -- subscribing -------------------------------------------------------------------------

    def _subscribe(self, topic: str, group: str | None, prefetch: int) -> Subscription:
        return SQLiteSubscription(self._worker, topic, group, prefetch)

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
