"""Transactional inbox: ``SQLiteIdempotencyStore.complete_with`` commits effect + mark together."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from pathlib import Path

import pytest

from eventwire.reliability.idempotency import (
    Duplicate,
    EffectEndedTransactionError,
    IdempotencyStore,
    MemoryIdempotencyStore,
    SQLiteIdempotencyStore,
    TransactionalIdempotencyStore,
)


def _book(conn: sqlite3.Connection, item: str) -> int:
    conn.execute("CREATE TABLE IF NOT EXISTS booked (item TEXT, n INTEGER)")
    conn.execute("INSERT INTO booked VALUES (?, 1)", (item,))
    return int(conn.execute("SELECT COUNT(*) FROM booked").fetchone()[0])


def _rows(path: Path, sql: str) -> int:
    """A count read through a connection of its own, as another process would see it."""
    with contextlib.closing(sqlite3.connect(path, timeout=30.0)) as conn:
        try:
            return int(conn.execute(sql).fetchone()[0])
        except sqlite3.OperationalError:  # the table was never committed
            return 0


def _booked(path: Path) -> int:
    return _rows(path, "SELECT COUNT(*) FROM booked")


def _marks(path: Path) -> int:
    return _rows(path, "SELECT COUNT(*) FROM eventwire_idempotency")


async def test_effect_and_mark_become_visible_together(tmp_path: Path) -> None:
    path = tmp_path / "inbox.db"
    store = SQLiteIdempotencyStore(path)
    assert isinstance(store, TransactionalIdempotencyStore)
    assert not isinstance(MemoryIdempotencyStore(), TransactionalIdempotencyStore)
    seen_inside: list[tuple[int, int]] = []

    def effect(conn: sqlite3.Connection) -> int:
        booked = _book(conn, "a")
        # Mid-transaction: the mark is already written on this connection (it goes first)
        # yet neither it nor the effect is visible to another connection.
        mine = conn.execute("SELECT COUNT(*) FROM eventwire_idempotency").fetchone()[0]
        assert mine == 1
        seen_inside.append((_booked(path), _marks(path)))
        return booked

    assert await store.complete_with("billing", "m1", effect) == 1
    assert seen_inside == [(0, 0)]
    assert (_booked(path), _marks(path)) == (1, 1)
    assert await store.is_done("billing", "m1")
    await store.aclose()


async def test_an_effect_that_raises_leaves_neither_effect_nor_mark(tmp_path: Path) -> None:
    path = tmp_path / "inbox.db"
    store = SQLiteIdempotencyStore(path)

    def failing(conn: sqlite3.Connection) -> None:
        _book(conn, "half-done")
        raise RuntimeError("gateway said no")

    with pytest.raises(RuntimeError, match="gateway said no"):
        await store.complete_with("billing", "m1", failing)
    assert (_booked(path), _marks(path)) == (0, 0)
    assert not await store.is_done("billing", "m1")
    # Nothing was left half-open: the retry commits normally.
    assert await store.complete_with("billing", "m1", lambda c: _book(c, "ok")) == 1
    assert (_booked(path), _marks(path)) == (1, 1)
    await store.aclose()


async def test_a_failing_mark_rolls_the_effect_back(tmp_path: Path) -> None:
    """Atomicity the other way round: the effect's writes do not outlive a failed mark."""
    path = tmp_path / "inbox.db"
    store = SQLiteIdempotencyStore(path)
    await store.complete_with("billing", "setup", lambda c: _book(c, "setup"))

    def sabotage(conn: sqlite3.Connection) -> None:
        # A trigger that makes the next done-mark fail to insert (a full disk, say).
        conn.execute(
            "CREATE TEMP TRIGGER no_marks BEFORE INSERT ON eventwire_idempotency "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )

    await store.complete_with("billing", "sabotage", sabotage)
    with pytest.raises(sqlite3.IntegrityError, match="disk full"):
        await store.complete_with("billing", "m1", lambda c: _book(c, "m1"))
    assert _booked(path) == 1  # only the setup row
    assert not await store.is_done("billing", "m1")
    await store.aclose()


async def test_a_done_message_is_reported_as_duplicate_and_not_run(tmp_path: Path) -> None:
    store = SQLiteIdempotencyStore(tmp_path / "inbox.db")
    runs: list[str] = []

    def effect(conn: sqlite3.Connection) -> str:
        runs.append("ran")
        return "charged"

    assert await store.complete_with("billing", "m1", effect) == "charged"
    again = await store.complete_with("billing", "m1", effect)
    assert again == Duplicate(scope="billing", message_id="m1")
    assert runs == ["ran"]
    # Marked by the runtime's plain mark_done counts too; another scope is independent.
    await store.mark_done("billing", "m2")
    assert isinstance(await store.complete_with("billing", "m2", effect), Duplicate)
    assert await store.complete_with("notifications", "m1", effect) == "charged"
    assert runs == ["ran", "ran"]
    # The runtime records completion again after the handler returns: harmless.
    await store.mark_done("billing", "m1")
    assert await store.is_done("billing", "m1")
    await store.aclose()


async def test_an_expired_mark_lets_the_effect_run_again(tmp_path: Path) -> None:
    now = [1000.0]
    store = SQLiteIdempotencyStore(tmp_path / "inbox.db", ttl=60, clock=lambda: now[0])
    assert await store.complete_with("g", "m1", lambda c: _book(c, "1")) == 1
    now[0] += 61
    assert await store.complete_with("g", "m1", lambda c: _book(c, "2")) == 2
    await store.aclose()


async def test_an_effect_that_commits_itself_is_refused(tmp_path: Path) -> None:
    store = SQLiteIdempotencyStore(tmp_path / "inbox.db")

    def commits(conn: sqlite3.Connection) -> None:
        conn.commit()

    with pytest.raises(EffectEndedTransactionError):
        await store.complete_with("g", "m1", commits)
    await store.aclose()


async def test_two_connections_racing_for_one_message_run_the_effect_once(tmp_path: Path) -> None:
    """Two stores on one file (as in two worker processes), released at the same instant."""
    path = tmp_path / "inbox.db"
    stores = [SQLiteIdempotencyStore(path) for _ in range(2)]
    barrier = threading.Barrier(2)

    def effect(conn: sqlite3.Connection) -> str:
        return str(_book(conn, "race"))

    async def contender(store: SQLiteIdempotencyStore) -> str | Duplicate:
        await store.is_done("g", "warm-up")  # open the connection before the race
        await asyncio.to_thread(barrier.wait)
        return await store.complete_with("g", "m1", effect)

    for _ in range(20):
        barrier.reset()
        results = await asyncio.gather(*(contender(s) for s in stores))
        assert sum(isinstance(r, Duplicate) for r in results) == 1, results
        await stores[0].aclose()
        stores[0] = SQLiteIdempotencyStore(path)
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            conn.execute("DELETE FROM eventwire_idempotency")
    assert _booked(path) == 20  # one effect per round, never two
    for store in stores:
        await store.aclose()


def test_the_protocol_is_the_plain_store_protocol_plus_complete_with() -> None:
    assert issubclass(TransactionalIdempotencyStore, IdempotencyStore)
    assert not isinstance(object(), TransactionalIdempotencyStore)
