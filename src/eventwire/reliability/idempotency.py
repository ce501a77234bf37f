"""Reliability layer: idempotency stores (memory, SQLite) and the transactional inbox protocol.

A store remembers which messages a consumer group has completed, keyed on
(group, message id), for ``ttl`` seconds. The runtime checks it before calling a handler and
records completion right after the handler succeeds, before it acks, so a redelivery caused by
a lost ack (or by a publisher retrying with the same id) is acked without running the handler
again. That alone leaves a window: a worker killed after the handler's side effect but before
``mark_done`` makes the next worker repeat the side effect.

``TransactionalIdempotencyStore`` closes the window (the transactional inbox pattern): its
``complete_with`` runs the side effect and writes the done-mark in ONE database transaction,
so after any crash either both happened (a redelivery is suppressed) or neither did (the
redelivery runs the effect once). Handlers use it through ``ctx.effectively_once(effect)``
with ``idempotent=True``. ``SQLiteIdempotencyStore`` implements it: the effect gets the
store's own ``sqlite3.Connection``, so the tables it writes live in the store's file. For
PostgreSQL or another database, implement the same protocol on that database's connection
(insert the mark with ``ON CONFLICT DO NOTHING`` and run the effect in that transaction).
Only what the effect writes through the connection is covered: a call to an outside service
from inside the effect can still repeat, and ``ctx.publish`` is at-least-once.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from eventwire.brokers._support.sqlite_wal import enable_wal
from eventwire.core.errors import ConfigurationError, EventwireError

DEFAULT_TTL = 24 * 3600.0
_T = TypeVar("_T")
_Conn_co = TypeVar("_Conn_co", covariant=True)


@runtime_checkable
class IdempotencyStore(Protocol):
    """Remembers completed (group, message id) pairs for a while."""

    async def is_done(self, group: str, message_id: str) -> bool: ...

    async def mark_done(self, group: str, message_id: str) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Duplicate:
    """What ``complete_with`` returns when the message was already done: nothing was run."""

    scope: str
    message_id: str


@runtime_checkable
class TransactionalIdempotencyStore(IdempotencyStore, Protocol[_Conn_co]):
    """A store that can commit a side effect together with the done-mark.

    ``complete_with`` opens a write transaction, returns ``Duplicate`` (after rolling back)
    when (scope, message id) is already done, else writes the mark, calls ``effect`` with the
    transaction's connection and commits both. An exception from ``effect`` rolls both back
    and propagates. ``effect`` is synchronous (it runs on the store's thread) and must neither
    commit nor roll back itself.
    """

    async def complete_with(
        self, scope: str, message_id: str, effect: Callable[[_Conn_co], _T]
    ) -> _T | Duplicate: ...


class EffectEndedTransactionError(EventwireError, RuntimeError):
    """The effect committed or rolled back the store's transaction itself (a bug in the
    effect; still a ``RuntimeError`` for code that caught it as one before)."""


class StoreThread:
    """The one worker thread a blocking store runs on: the event loop never blocks on the
    database, and a store waiting on a busy database never occupies the loop's default
    executor (which DNS lookups and other libraries share). Reopened lazily after close."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="eventwire-idempotency")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def close(self, release: Callable[[], None]) -> None:
        """Run ``release`` (close the connection) on the thread, then stop the thread."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        await asyncio.get_running_loop().run_in_executor(executor, release)
        executor.shutdown(wait=False)  # reopened lazily: an App may be entered again


def check_ttl(ttl: float) -> None:
    """Every store's TTL check: marks must live for a positive time."""
    if ttl <= 0:
        raise ConfigurationError(f"idempotency ttl must be positive, got {ttl}")


class MemoryIdempotencyStore:
    """Per-process store: bounded, TTL-expiring, lost on restart (the default)."""

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        max_entries: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_ttl(ttl)
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        # Insertion order is expiry order because every entry gets the same ttl.
        self._expires: OrderedDict[tuple[str, str], float] = OrderedDict()

    async def is_done(self, group: str, message_id: str) -> bool:
        self._purge()
        return (group, message_id) in self._expires

    async def mark_done(self, group: str, message_id: str) -> None:
        key = (group, message_id)
        self._expires.pop(key, None)
        self._expires[key] = self._clock() + self._ttl
        self._purge()

    async def aclose(self) -> None:
        # Nothing to release; keeping the entries lets a re-entered App still dedupe.
        return None

    def _purge(self) -> None:
        now = self._clock()
        while self._expires:
            key, expires = next(iter(self._expires.items()))
            if expires > now and len(self._expires) <= self._max:
                break
            del self._expires[key]

    def __len__(self) -> int:
        return len(self._expires)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS eventwire_idempotency (
    grp TEXT NOT NULL,
    message_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (grp, message_id)
) WITHOUT ROWID
"""


class SQLiteIdempotencyStore:
    """Store in a SQLite file: survives restarts and is shared by processes using the same file.

    stdlib ``sqlite3`` runs in the store's own worker thread so the event loop never blocks on
    disk, and a store waiting on a busy file never occupies the loop's default executor (which
    DNS lookups and other libraries share); WAL mode and a busy timeout let several worker
    processes share the file. Times are wall-clock
    (``time.time``) because they must mean the same thing in every process.
    """

    _PURGE_EVERY = 500

    def __init__(
        self,
        path: str | Path,
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_ttl(ttl)
        self._path = Path(path)
        self._ttl = ttl
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one connection, used by one worker thread at a time
        self._writes = 0
        self._thread = StoreThread()

    @property
    def path(self) -> Path:
        return self._path

    async def is_done(self, group: str, message_id: str) -> bool:
        return await self._run(self._is_done, group, message_id, self._clock())

    async def mark_done(self, group: str, message_id: str) -> None:
        await self._run(self._mark_done, group, message_id, self._clock())

    async def complete_with(
        self, scope: str, message_id: str, effect: Callable[[sqlite3.Connection], _T]
    ) -> _T | Duplicate:
        """Run ``effect(conn)`` and mark (scope, message id) done in one transaction.

        The effect's tables live in this store's file (``path``); effects of one process run
        one at a time, on the store's thread, so keep them short (a few statements).
        """
        return await self._run(self._complete_with, scope, message_id, self._clock(), effect)

    async def aclose(self) -> None:
        await self._thread.close(self._close)

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await self._thread.run(fn, *args)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, timeout=30.0, check_same_thread=False)
            enable_wal(conn, 30.0, str(self._path))
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_SCHEMA)
            conn.commit()
            self._conn = conn
        return self._conn

    def _is_done(self, group: str, message_id: str, now: float) -> bool:
        with self._lock:
            row = (
                self._connection()
                .execute(
                    "SELECT 1 FROM eventwire_idempotency "
                    "WHERE grp = ? AND message_id = ? AND expires_at > ?",
                    (group, message_id, now),
                )
                .fetchone()
            )
            return row is not None

    def _mark_done(self, group: str, message_id: str, now: float) -> None:
        with self._lock:
            conn = self._connection()
            with conn:
                # REPLACE: after ctx.effectively_once the mark is already there (committed
                # with the effect); the runtime's own record then only renews its expiry.
                conn.execute(
                    "INSERT OR REPLACE INTO eventwire_idempotency VALUES (?, ?, ?)",
                    (group, message_id, now + self._ttl),
                )
                self._writes += 1
                if self._writes % self._PURGE_EVERY == 0:
                    conn.execute("DELETE FROM eventwire_idempotency WHERE expires_at <= ?", (now,))

    def _complete_with(
        self, scope: str, message_id: str, now: float, effect: Callable[[sqlite3.Connection], _T]
    ) -> _T | Duplicate:
        with self._lock:
            conn = self._connection()
            # IMMEDIATE takes the write lock up front: no other process can insert the same
            # mark between our check and our insert, and no upgrade deadlock can happen.
            conn.execute("BEGIN IMMEDIATE")
            try:
                found = conn.execute(
                    "SELECT 1 FROM eventwire_idempotency "
                    "WHERE grp = ? AND message_id = ? AND expires_at > ?",
                    (scope, message_id, now),
                ).fetchone()
                if found is not None:
                    conn.execute("ROLLBACK")
                    return Duplicate(scope=scope, message_id=message_id)
                # The mark goes in first: an effect that wrongly commits takes the mark along.
                conn.execute(
                    "INSERT OR REPLACE INTO eventwire_idempotency VALUES (?, ?, ?)",
                    (scope, message_id, now + self._ttl),
                )
                result = effect(conn)
                if not conn.in_transaction:
                    raise EffectEndedTransactionError(
                        "the effect passed to complete_with committed or rolled back the "
                        "transaction itself; it must only execute statements"
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

    def _close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
