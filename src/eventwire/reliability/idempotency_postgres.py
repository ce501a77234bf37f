"""Reliability layer: an idempotency store in PostgreSQL, with the transactional inbox.

Marks live in one table (``eventwire_idempotency``: group, message id, expiry), shared by
every worker that reaches the database, with the TTL semantics of the memory and SQLite
stores: a mark counts until it expires, a second ``mark_done`` renews it, expired rows are
purged every few hundred writes. ``complete_with`` is ``ctx.effectively_once``: the mark and
the effect's own statements commit in ONE PostgreSQL transaction, so after any crash either
both happened or neither did.

Why psycopg 3 and not asyncpg: ``TransactionalIdempotencyStore.complete_with`` hands the
effect a connection and calls it synchronously (the SQLite store's contract, which handlers
are written against); psycopg's ``Connection`` is a synchronous DB-API connection an effect
can use as it would anywhere else, run here on the store's own thread so the event loop
never blocks. asyncpg has only an async API and would need a second effect signature.
psycopg is imported when the store first connects, so ``import eventwire`` loads no client.

Concurrency: two workers completing the same message race on the mark's primary key; the
second ``INSERT ... ON CONFLICT`` waits for the first transaction and then sees its mark, so
it returns ``Duplicate`` without running the effect (READ COMMITTED is enough).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from eventwire.core.errors import BrokerError, ConfigurationError
from eventwire.core.url import redact
from eventwire.reliability.idempotency import (
    DEFAULT_TTL,
    Duplicate,
    EffectEndedTransactionError,
    StoreThread,
    check_ttl,
)

if TYPE_CHECKING:
    import psycopg

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS eventwire_idempotency (
    grp TEXT NOT NULL,
    message_id TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (grp, message_id)
)
"""
_IS_DONE = (
    "SELECT 1 FROM eventwire_idempotency WHERE grp = %s AND message_id = %s AND expires_at > %s"
)
_RENEW = (
    "INSERT INTO eventwire_idempotency VALUES (%s, %s, %s) "
    "ON CONFLICT (grp, message_id) DO UPDATE SET expires_at = EXCLUDED.expires_at"
)
# Claims the mark unless an unexpired one exists: no row back means "already done".
_CLAIM = (
    "INSERT INTO eventwire_idempotency VALUES (%s, %s, %s) "
    "ON CONFLICT (grp, message_id) DO UPDATE SET expires_at = EXCLUDED.expires_at "
    "WHERE eventwire_idempotency.expires_at <= %s RETURNING 1"
)
_PURGE = "DELETE FROM eventwire_idempotency WHERE expires_at <= %s"


class PostgresIdempotencyStore:
    """Marks in a PostgreSQL table; ``complete_with`` commits an effect with its mark.

    ``url`` is a libpq URL (``postgresql://user:password@host:5432/db``). Times are
    wall-clock (``time.time``) because every worker must read them the same way.
    """

    _PURGE_EVERY = 500

    def __init__(
        self, url: str, *, ttl: float = DEFAULT_TTL, clock: Callable[[], float] = time.time
    ) -> None:
        check_ttl(ttl)
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigurationError(
                f"idempotency store URL {redact(url)!r} is not a PostgreSQL URL: "
                "write it like postgresql://user:password@localhost:5432/app"
            )
        self._url = url
        self._ttl = ttl
        self._clock = clock
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self._writes = 0
        self._thread = StoreThread()

    async def is_done(self, group: str, message_id: str) -> bool:
        return await self._run("checking a mark", self._is_done, group, message_id, self._clock())

    async def mark_done(self, group: str, message_id: str) -> None:
        await self._run("writing a mark", self._mark_done, group, message_id, self._clock())

    async def complete_with(
        self, scope: str, message_id: str, effect: Callable[[psycopg.Connection[Any]], _T]
    ) -> _T | Duplicate:
        """Run ``effect(conn)`` and mark (scope, message id) done in one transaction.

        The effect runs on the store's thread with the transaction's connection: it executes
        statements and must neither commit nor roll back.
        """
        return await self._run(
            "completing a message", self._complete_with, scope, message_id, self._clock(), effect
        )

    async def aclose(self) -> None:
        await self._thread.close(self._close)

    async def _run(self, doing: str, fn: Callable[..., _T], *args: Any) -> _T:
        import psycopg

        try:
            return await self._thread.run(fn, *args)
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError):
                await self._thread.run(self._close)  # reconnect on the next call
            raise BrokerError(
                f"{doing} in the idempotency store at {redact(self._url)} failed: "
                f"{type(exc).__name__}: {redact(str(exc)).strip()}"
            ) from exc

    def _connection(self) -> psycopg.Connection[Any]:
        import psycopg

        if self._conn is None or self._conn.closed:
            # autocommit: single statements commit at once; complete_with opens its own
            # transaction block.
            conn = psycopg.connect(self._url, autocommit=True, connect_timeout=10)
            conn.execute(_SCHEMA)
            self._conn = conn
        return self._conn

    def _is_done(self, group: str, message_id: str, now: float) -> bool:
        with self._lock:
            row = self._connection().execute(_IS_DONE, (group, message_id, now)).fetchone()
            return row is not None

    def _mark_done(self, group: str, message_id: str, now: float) -> None:
        with self._lock:
            conn = self._connection()
            # After ctx.effectively_once the mark is already there (committed with the
            # effect); the runtime's own record then only renews its expiry.
            conn.execute(_RENEW, (group, message_id, now + self._ttl))
            self._writes += 1
            if self._writes % self._PURGE_EVERY == 0:
                conn.execute(_PURGE, (now,))

    def _complete_with(
        self,
        scope: str,
        message_id: str,
        now: float,
        effect: Callable[[psycopg.Connection[Any]], _T],
    ) -> _T | Duplicate:
        import psycopg
        from psycopg import pq

        with self._lock:
            conn = self._connection()
            outcome: list[_T | Duplicate] = []
            with conn.transaction():
                claimed = conn.execute(_CLAIM, (scope, message_id, now + self._ttl, now))
                if claimed.fetchone() is None:
                    outcome.append(Duplicate(scope=scope, message_id=message_id))
                    raise psycopg.Rollback  # leaves the block, rolled back, without an error
                # The mark goes in first: an effect that wrongly commits takes the mark along.
                outcome.append(effect(conn))
                if conn.info.transaction_status != pq.TransactionStatus.INTRANS:
                    raise EffectEndedTransactionError(
                        "the effect passed to complete_with committed or rolled back the "
                        "transaction itself; it must only execute statements"
                    )
            return outcome[0]

    def _close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"PostgresIdempotencyStore({redact(self._url)!r})"
