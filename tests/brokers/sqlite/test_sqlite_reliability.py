"""Tests: sqlite broker failure paths: lost leases, stale settles, failed acks, full disk, WAL."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path

import pytest

from eventwire.brokers.catalog import open_broker
from eventwire.brokers.sqlite import retention
from eventwire.brokers.sqlite.broker import SQLiteBroker
from eventwire.core.errors import BrokerError, PublishError
from eventwire.core.message import DEAD_LETTER_GROUP, Delivery, Message, dead_letter_topic

DEADLINE = 20.0  # generous: two shared cores under load


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "broker.db"


def claims(path: Path) -> list[tuple[str | None, int]]:
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT consumer, attempt FROM claims WHERE topic = 't'").fetchall()
    return [(r[0], int(r[1])) for r in rows]


def expire_leases(path: Path) -> None:
    """What a blocked event loop looks like to other consumers: its leases ran out."""
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE claims SET due_at = 0")


async def next_of(sub: AsyncIterator[Delivery]) -> Delivery:
    return await asyncio.wait_for(anext(sub), DEADLINE)


async def settle(delivery: Delivery, how: str) -> None:
    if how == "ack":
        await delivery.ack()
    elif how == "nack":
        await delivery.nack()
    else:
        await delivery.dead_letter("late")


async def poll(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds, failing after DEADLINE (never a fixed sleep)."""
    async with asyncio.timeout(DEADLINE):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("how", ["ack", "nack", "dead-letter"])
async def test_stale_delivery_of_the_same_consumer_cannot_settle_the_new_claim(
    path: Path, how: str
) -> None:
    # One subscription with room for two: its lease ran out (loop blocked by a synchronous
    # handler) and it claimed the same message again. The first delivery is now stale.
    async with open_broker(f"sqlite:///{path}") as broker:
        async with broker.subscribe("t", group="g", prefetch=2) as sub:
            await broker.publish("t", Message(body=b"m"))
            stale = await next_of(sub)
            expire_leases(path)
            current = await next_of(sub)
            assert current.attempt == 2
            await settle(stale, how)
            await broker.health()  # runs after (so commits) any batched ack
            assert [attempt for consumer, attempt in claims(path) if consumer] == [2]
            await current.nack()  # must still hold the claim: the message comes back
            again = await next_of(sub)
            assert (again.message.body, again.attempt) == (b"m", 3)
            await again.ack()
        async with broker.subscribe(dead_letter_topic("t"), group=DEAD_LETTER_GROUP) as dlq:
            await broker.publish(dead_letter_topic("t"), Message(body=b"marker"))
            assert (await next_of(dlq)).message.body == b"marker"  # no stale dead letter


@pytest.mark.parametrize("how", ["ack", "nack", "dead-letter"])
async def test_late_settle_of_a_worker_that_lost_its_lease_leaves_the_new_holder(
    path: Path, how: str
) -> None:
    url = f"sqlite:///{path}"
    first, second = open_broker(url), open_broker(url)
    async with (
        first,
        second,
        first.subscribe("t", group="g") as a,
        second.subscribe("t", group="g") as b,
    ):
        await first.publish("t", Message(body=b"m"))
        late = await next_of(a)
        expire_leases(path)
        taken = await next_of(b)
        assert taken.attempt == 2
        await settle(late, how)
        await first.health()  # runs after (so commits) any batched ack
        assert [attempt for consumer, attempt in claims(path) if consumer] == [2]
        await taken.ack()
        await poll(lambda: not claims(path))


async def test_ack_batch_failing_on_a_held_lock_is_retried_not_dropped(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = open_broker(f"sqlite:///{path}?busy_timeout=50")
    async with broker, broker.subscribe("t", group="g") as sub:
        await broker.publish("t", Message(body=b"m"))
        delivery = await next_of(sub)
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            with caplog.at_level(logging.WARNING, "eventwire.brokers.sqlite"):
                blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
                await delivery.ack()
                await poll(lambda: "ack batch failed" in caplog.text)
                blocker.execute("COMMIT")
        finally:
            blocker.close()
        # Without a retry the claim stays held by this live subscription until it ends.
        await poll(lambda: not claims(path))


async def test_full_disk_reports_the_real_error_and_the_broker_recovers(path: Path) -> None:
    broker = open_broker(f"sqlite:///{path}")
    assert isinstance(broker, SQLiteBroker)

    def cap_pages(conn: sqlite3.Connection) -> None:  # the file may grow by one page only
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        conn.execute(f"PRAGMA max_page_count = {pages + 1}").fetchall()

    def uncap(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA max_page_count = 1000000").fetchall()

    async with broker:
        await broker._run(lambda s: s.call(cap_pages))
        # Not "cannot rollback - no transaction is active": SQLite had rolled back already.
        with pytest.raises(PublishError, match="database or disk is full"):
            await broker.publish("t", Message(body=b"x" * 200_000))
        await broker._run(lambda s: s.call(uncap))
        async with broker.subscribe("t", group="g") as sub:
            await broker.publish("t", Message(body=b"after"))
            assert (await next_of(sub)).message.body == b"after"


async def test_checkpoint_cuts_back_a_wal_file_over_the_limit(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "WAL_SIZE_LIMIT", 64 * 1024)
    broker = open_broker(f"sqlite:///{path}")
    assert isinstance(broker, SQLiteBroker)
    wal = path.with_name(path.name + "-wal")
    async with broker:
        reader = sqlite3.connect(path, isolation_level=None)
        try:
            # A reader that never lets go keeps SQLite's own checkpoints from resetting the WAL.
            reader.execute("BEGIN")
            reader.execute("SELECT COUNT(*) FROM messages").fetchall()
            for i in range(20):
                await broker.publish("t", Message(body=bytes(20_000), id=f"m{i}"))
            reader.execute("COMMIT")
        finally:
            reader.close()
        assert wal.stat().st_size > 256 * 1024
        await broker._run(lambda s: s.call(broker._checkpoint))
        assert wal.stat().st_size == 0


async def test_clock_set_back_does_not_strand_a_dead_consumers_claims(path: Path) -> None:
    broker = open_broker(f"sqlite:///{path}?lease=0.5")
    assert isinstance(broker, SQLiteBroker)
    async with broker, broker.subscribe("t", group="g", prefetch=2) as sub:
        await broker.publish("t", Message(body=b"m"))
        await next_of(sub)
        with closing(sqlite3.connect(path)) as conn, conn:
            # A consumer that died just before the wall clock was set back by an hour: its
            # lease seems to end an hour from now.
            conn.execute("UPDATE claims SET consumer = 'dead', due_at = ?", (time.time() + 3600,))
        await broker.run_retention()
        again = await next_of(sub)
        assert (again.message.body, again.attempt) == (b"m", 2)


@pytest.mark.parametrize("how", ["nack", "dead-letter"])
async def test_nack_or_dead_letter_failing_on_a_held_lock_raises_and_keeps_the_claim(
    path: Path, how: str
) -> None:
    broker = open_broker(f"sqlite:///{path}?busy_timeout=50")
    async with broker, broker.subscribe("t", group="g") as sub:
        await broker.publish("t", Message(body=b"m"))
        delivery = await next_of(sub)
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            with pytest.raises(BrokerError, match="locked"):
                await settle(delivery, how)
            blocker.execute("COMMIT")
        finally:
            blocker.close()
        assert delivery.settled is None  # still ours, and may be settled again
        assert [consumer is not None for consumer, _ in claims(path)] == [True]
        await settle(delivery, how)
        if how == "nack":
            assert (await next_of(sub)).attempt == 2
            return
    reader = open_broker(f"sqlite:///{path}")
    async with reader, reader.subscribe(dead_letter_topic("t"), group=DEAD_LETTER_GROUP) as dlq:
        assert (await next_of(dlq)).message.body == b"m"


async def test_opening_a_new_file_waits_for_another_process_switching_it_to_wal(
    path: Path,
) -> None:
    # Two workers starting together on a fresh file: the other one is mid-way through its
    # setup (holding the write lock of the not-yet-WAL file) when this one asks for WAL.
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("CREATE TABLE early (a)")
        other.execute("BEGIN IMMEDIATE")
        asyncio.get_running_loop().call_later(0.3, other.execute, "COMMIT")
        broker = open_broker(f"sqlite:///{path}")
        async with broker, broker.subscribe("t", group="g") as sub:
            await broker.publish("t", Message(body=b"m"))
            assert (await next_of(sub)).message.body == b"m"
    finally:
        other.close()
