"""``ctx.effectively_once`` on the real SQLite broker and store: a crash before the ack repeats
nothing; without the transaction the same crash repeats the side effect (the control)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import pytest

from eventwire.core import headers as h
from eventwire.core.message import Message
from eventwire.reliability import dead_letter as dl
from eventwire.reliability.idempotency import (
    Duplicate,
    MemoryIdempotencyStore,
    SQLiteIdempotencyStore,
)
from eventwire.runtime.app import App
from eventwire.runtime.context import Context, EffectivelyOnceUnavailableError

from .helpers import broker_url, memory_url, read_dlq, running, wait_until

_SCHEMA = "CREATE TABLE IF NOT EXISTS effects (message_id TEXT PRIMARY KEY, runs INTEGER)"


_EFFECT = "INSERT INTO effects VALUES (?, 1) ON CONFLICT (message_id) DO UPDATE SET runs = runs + 1"


def _runs(path: Path, message_id: str) -> int:
    with contextlib.closing(sqlite3.connect(path, timeout=30.0)) as conn:
        conn.execute(_SCHEMA)
        row = conn.execute("SELECT runs FROM effects WHERE message_id = ?", (message_id,))
        found = row.fetchone()
        return int(found[0]) if found else 0


def _worker(url: str, db: Path, *, transactional: bool, crash: bool) -> App:
    """A worker whose handler makes its side effect, then (``crash``) never returns: stopping
    it abandons the delivery unsettled and unmarked, as a SIGKILL right then would."""
    app = App(url, shutdown_timeout=0.2, idempotency_store=SQLiteIdempotencyStore(db))

    @app.subscriber("orders", group="billing", idempotent=True)
    async def handle(message: Message, ctx: Context) -> None:
        def effect(conn: sqlite3.Connection) -> None:
            conn.execute(_SCHEMA)
            conn.execute(_EFFECT, (message.id,))

        if transactional:
            await ctx.effectively_once(effect)
        else:  # the same write, committed on its own: the runtime's mark comes later
            with contextlib.closing(sqlite3.connect(db, timeout=30.0)) as conn, conn:
                effect(conn)
        if crash:
            await asyncio.Event().wait()

    return app


@pytest.mark.parametrize("transactional", [True, False], ids=["effectively-once", "plain"])
async def test_a_crash_between_effect_and_ack_repeats_nothing(
    tmp_path: Path, transactional: bool
) -> None:
    url = broker_url("sqlite", tmp_path)
    db = tmp_path / "effects.db"
    first = _worker(url, db, transactional=transactional, crash=True)
    async with first, running(first):
        await first.publish("orders", Message(body=b"{}", id="order-1"))
        await wait_until(lambda: _runs(db, "order-1") == 1)
    # ``first`` stopped with its handler stuck after the effect: the delivery went back to
    # the broker neither acked nor recorded as done by the runtime.
    assert first.stats.processed == 0
    second = _worker(url, db, transactional=transactional, crash=False)
    async with second, running(second):
        await wait_until(lambda: second.stats.processed + second.stats.duplicates_suppressed == 1)
    if transactional:
        assert _runs(db, "order-1") == 1  # committed with its mark: the redelivery is acked
        assert second.stats.duplicates_suppressed == 1
    else:
        assert _runs(db, "order-1") == 2  # the window the transaction closes
        assert second.stats.processed == 1


class _RacingStore(SQLiteIdempotencyStore):
    """Answers "not done" to the runtime's pre-check, as when two workers got the same
    message at once (a lease expired under a slow one): only the transaction can tell."""

    async def is_done(self, group: str, message_id: str) -> bool:
        return False


async def test_a_delivery_that_lost_the_race_gets_duplicate_and_no_effect(tmp_path: Path) -> None:
    db = tmp_path / "effects.db"
    app = App(memory_url(), idempotency_store=_RacingStore(db))
    results: list[object] = []

    @app.subscriber("orders", group="billing", idempotent=True)
    async def handle(message: Message, ctx: Context) -> None:
        def effect(conn: sqlite3.Connection) -> int:
            conn.execute(_SCHEMA)
            conn.execute(_EFFECT, (message.id,))
            return 7

        results.append(await ctx.effectively_once(effect))

    async with app, running(app):
        for _ in range(2):
            await app.publish("orders", Message(body=b"{}", id="order-1"))
        await wait_until(lambda: app.stats.processed == 2)
    assert results == [7, Duplicate(scope="billing", message_id="order-1")]
    assert _runs(db, "order-1") == 1


@pytest.mark.parametrize("setup", ["not-idempotent", "memory-store"])
async def test_effectively_once_without_support_dead_letters_at_once(
    tmp_path: Path, setup: str
) -> None:
    store = (
        MemoryIdempotencyStore()
        if setup == "memory-store"
        else SQLiteIdempotencyStore(tmp_path / "effects.db")
    )
    app = App(memory_url(), idempotency_store=store)
    raised: list[BaseException] = []

    @app.subscriber("orders", group="billing", idempotent=setup != "not-idempotent")
    async def handle(message: Message, ctx: Context) -> None:
        try:
            await ctx.effectively_once(lambda conn: None)
        except EffectivelyOnceUnavailableError as exc:
            raised.append(exc)
            raise

    async with app, running(app):
        await app.publish("orders", Message(body=b"{}", id="order-1"))
        (dead,) = await read_dlq(app.broker, "orders", 1)
    assert dead.headers[h.DLQ_REASON] == dl.REASON_PERMANENT
    assert len(raised) == 1  # not retried: every attempt would fail the same way
    expected = "idempotent=True" if setup == "not-idempotent" else "MemoryIdempotencyStore"
    assert expected in str(raised[0])
