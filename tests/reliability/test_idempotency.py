"""Idempotency stores: memory (TTL, bound) and SQLite (TTL, shared across processes)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from eventwire.core.errors import ConfigurationError
from eventwire.reliability.idempotency import (
    IdempotencyStore,
    MemoryIdempotencyStore,
    SQLiteIdempotencyStore,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "sqlite"])
def store_and_clock(
    request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[IdempotencyStore, Clock]:
    clock = Clock()
    if request.param == "memory":
        return MemoryIdempotencyStore(ttl=60, clock=clock), clock
    return SQLiteIdempotencyStore(tmp_path / "idem.db", ttl=60, clock=clock), clock


async def test_done_is_per_group_and_expires(
    store_and_clock: tuple[IdempotencyStore, Clock],
) -> None:
    store, clock = store_and_clock
    assert isinstance(store, IdempotencyStore)
    assert not await store.is_done("g", "m1")
    await store.mark_done("g", "m1")
    assert await store.is_done("g", "m1")
    assert not await store.is_done("other", "m1")
    assert not await store.is_done("g", "m2")
    clock.now += 59
    assert await store.is_done("g", "m1")
    clock.now += 2
    assert not await store.is_done("g", "m1")
    await store.aclose()


async def test_memory_store_is_bounded() -> None:
    store = MemoryIdempotencyStore(max_entries=3)
    for i in range(10):
        await store.mark_done("g", str(i))
    assert len(store) == 3
    assert await store.is_done("g", "9")
    assert not await store.is_done("g", "0")


def test_ttl_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        MemoryIdempotencyStore(ttl=0)
    with pytest.raises(ConfigurationError):
        SQLiteIdempotencyStore(tmp_path / "x.db", ttl=-1)


async def test_sqlite_store_is_shared_across_processes_and_restarts(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "idem.db"
    store = SQLiteIdempotencyStore(path, ttl=3600)
    await store.mark_done("billing", "from-parent")
    script = (
        "import asyncio, sys\n"
        "from eventwire.reliability.idempotency import SQLiteIdempotencyStore\n"
        "async def main():\n"
        "    s = SQLiteIdempotencyStore(sys.argv[1], ttl=3600)\n"
        "    assert await s.is_done('billing', 'from-parent')\n"
        "    await s.mark_done('billing', 'from-child')\n"
        "    await s.aclose()\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=60)
    assert await store.is_done("billing", "from-child")
    await store.aclose()
    reopened = SQLiteIdempotencyStore(path, ttl=3600)
    assert await reopened.is_done("billing", "from-parent")
    await reopened.aclose()


async def test_sqlite_store_uses_wal_and_never_the_loops_default_executor(tmp_path: Path) -> None:
    """Handlers waiting on a busy database file must not hold the threads that the loop's
    other users (getaddrinfo in broker clients, asyncio.to_thread) need."""

    class Refusing(concurrent.futures.ThreadPoolExecutor):
        def submit(self, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
            raise AssertionError("the default executor was used")

    loop = asyncio.get_running_loop()
    refusing = Refusing(1)
    loop.set_default_executor(refusing)
    store = SQLiteIdempotencyStore(tmp_path / "idem.db")
    try:
        await asyncio.gather(*(store.mark_done("g", str(i)) for i in range(20)))
        assert all(await asyncio.gather(*(store.is_done("g", str(i)) for i in range(20))))
        await store.aclose()
        assert await store.is_done("g", "3"), "a closed store reopens on use"
    finally:
        await store.aclose()
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor())
        refusing.shutdown()
    with contextlib.closing(sqlite3.connect(tmp_path / "idem.db")) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
