"""Reliability layer: the ``IdempotencyStore`` protocol and its in-memory and SQLite stores.

A store remembers which messages a consumer group has completed, keyed on
(group, message id), for ``ttl`` seconds. The runtime records completion right after the
handler succeeds and before it acks, so a redelivery caused by a lost ack (or by a publisher
retrying with the same id) is acked without running the handler again. A crash between the
handler's side effect and ``mark_done`` can still repeat the handler once: stores narrow the
window, they cannot close it without the side effect and the record sharing a transaction.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from eventwire.core.errors import ConfigurationError

DEFAULT_TTL = 24 * 3600.0
_T = TypeVar("_T")


@runtime_checkable
class IdempotencyStore(Protocol):
    """Remembers completed (group, message id) pairs for a while."""

    async def is_done(self, group: str, message_id: str) -> bool: ...

    async def mark_done(self, group: str, message_id: str) -> None: ...

    async def aclose(self) -> None: ...


def _check_ttl(ttl: float) -> None:
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
        _check_ttl(ttl)
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
        _check_ttl(ttl)
        self._path = Path(path)
        self._ttl = ttl
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one connection, used by one worker thread at a time
        self._writes = 0
        self._executor: ThreadPoolExecutor | None = None

    @property
    def path(self) -> Path:
        return self._path

    async def is_done(self, group: str, message_id: str) -> bool:
        return await self._run(self._is_done, group, message_id, self._clock())

    async def mark_done(self, group: str, message_id: str) -> None:
        await self._run(self._mark_done, group, message_id, self._clock())

    async def aclose(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        await asyncio.get_running_loop().run_in_executor(executor, self._close)
        executor.shutdown(wait=False)  # reopened lazily: an App may be entered again

    async def _run(self, fn: Callable[[str, str, float], _T], *args: Any) -> _T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="eventwire-idempotency")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, timeout=30.0, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
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
                conn.execute(
                    "INSERT OR REPLACE INTO eventwire_idempotency VALUES (?, ?, ?)",
                    (group, message_id, now + self._ttl),
                )
                self._writes += 1
                if self._writes % self._PURGE_EVERY == 0:
                    conn.execute("DELETE FROM eventwire_idempotency WHERE expires_at <= ?", (now,))

    def _close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
