"""Shared idempotency stores on the real servers: Redis and PostgreSQL (127.0.0.1).

The same TTL semantics as the memory and SQLite stores; marks shared by two store instances
(two workers); PostgreSQL's ``complete_with`` commits the effect and the mark together.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from eventwire.core.errors import BrokerError, ConfigurationError
from eventwire.reliability.idempotency import (
    Duplicate,
    IdempotencyStore,
    TransactionalIdempotencyStore,
)
from eventwire.reliability.idempotency_postgres import PostgresIdempotencyStore
from eventwire.reliability.idempotency_redis import RedisIdempotencyStore

REDIS_URL = os.environ.get("EVENTWIRE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "EVENTWIRE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _group() -> str:
    return f"test-idem-{uuid.uuid4().hex}"  # fresh marks on the shared servers


@pytest.fixture(autouse=True, scope="module")
def _remove_marks() -> Iterator[None]:
    """Leave no marks of these tests on the shared PostgreSQL (Redis expires its own)."""
    yield
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute("DELETE FROM eventwire_idempotency WHERE grp LIKE 'test-idem-%'")


@pytest.fixture
async def redis_pair() -> AsyncIterator[tuple[RedisIdempotencyStore, RedisIdempotencyStore]]:
    a, b = RedisIdempotencyStore(REDIS_URL, ttl=30), RedisIdempotencyStore(REDIS_URL, ttl=30)
    yield a, b
    await a.aclose()
    await b.aclose()


@pytest.fixture
async def postgres_pair() -> AsyncIterator[
    tuple[PostgresIdempotencyStore, PostgresIdempotencyStore]
]:
    a, b = PostgresIdempotencyStore(POSTGRES_URL), PostgresIdempotencyStore(POSTGRES_URL)
    yield a, b
    await a.aclose()
    await b.aclose()


async def _marks_are_shared(first: IdempotencyStore, second: IdempotencyStore) -> None:
    group = _group()
    assert not await first.is_done(group, "m-1")
    await first.mark_done(group, "m-1")
    assert await second.is_done(group, "m-1"), "a redelivery to another worker is suppressed"
    assert not await second.is_done(group, "m-2")
    assert not await second.is_done(f"{group}-other", "m-1"), "marks are per group"


@pytest.mark.redis
async def test_redis_marks_are_shared_between_workers(
    redis_pair: tuple[RedisIdempotencyStore, RedisIdempotencyStore],
) -> None:
    await _marks_are_shared(*redis_pair)


@pytest.mark.redis
async def test_redis_marks_expire_after_the_ttl_and_are_renewed() -> None:
    store = RedisIdempotencyStore(REDIS_URL, ttl=0.3)
    group = _group()
    try:
        await store.mark_done(group, "m")
        assert await store.is_done(group, "m")
        deadline = time.monotonic() + 10
        while await store.is_done(group, "m"):  # Redis expires the key itself
            assert time.monotonic() < deadline, "mark did not expire"
            await asyncio.sleep(0.05)
        await store.mark_done(group, "m")  # a new mark after expiry counts again
        assert await store.is_done(group, "m")
    finally:
        await store.aclose()


def test_redis_keys_cannot_collide_across_groups() -> None:
    store = RedisIdempotencyStore(REDIS_URL)
    assert store.key("a:b", "c") != store.key("a", "b:c")


@pytest.mark.redis
async def test_redis_store_is_not_transactional() -> None:
    store = RedisIdempotencyStore(REDIS_URL)
    assert isinstance(store, IdempotencyStore)
    assert not isinstance(store, TransactionalIdempotencyStore)  # effectively_once says so


def test_store_urls_are_checked_and_passwords_never_shown() -> None:
    with pytest.raises(ConfigurationError, match="not a Redis URL"):
        RedisIdempotencyStore("postgresql://u:hunter2@h/db")
    with pytest.raises(ConfigurationError, match="not a PostgreSQL URL") as info:
        PostgresIdempotencyStore("redis://u:hunter2@h/0")
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(RedisIdempotencyStore("redis://u:hunter2@h:6379/0"))
    assert "hunter2" not in repr(PostgresIdempotencyStore("postgresql://u:hunter2@h/db"))
    with pytest.raises(ConfigurationError, match="ttl"):
        PostgresIdempotencyStore(POSTGRES_URL, ttl=0)


async def test_unreachable_stores_raise_one_broker_error() -> None:
    for store in (
        RedisIdempotencyStore("redis://u:hunter2@127.0.0.1:1/0"),
        PostgresIdempotencyStore("postgresql://u:hunter2@127.0.0.1:1/db"),
    ):
        with pytest.raises(BrokerError, match="idempotency store") as info:
            await store.is_done("g", "m")
        assert "hunter2" not in str(info.value)
        await store.aclose()


async def test_postgres_marks_are_shared_between_workers(
    postgres_pair: tuple[PostgresIdempotencyStore, PostgresIdempotencyStore],
) -> None:
    await _marks_are_shared(*postgres_pair)


async def test_postgres_marks_expire_after_the_ttl_and_are_renewed() -> None:
    clock = Clock()
    store = PostgresIdempotencyStore(POSTGRES_URL, ttl=60, clock=clock)
    group = _group()
    try:
        await store.mark_done(group, "m")
        clock.now += 59
        assert await store.is_done(group, "m")
        await store.mark_done(group, "m")  # renewed: another 60 s from now
        clock.now += 59
        assert await store.is_done(group, "m")
        clock.now += 2
        assert not await store.is_done(group, "m")
    finally:
        await store.aclose()


def _insert_effect(table: str, value: str) -> Any:
    def effect(conn: Any) -> str:
        conn.execute(f"INSERT INTO {table} (v) VALUES (%s)", (value,))
        return value

    return effect


@pytest.fixture
async def effects_table() -> AsyncIterator[str]:
    import psycopg

    table = f"test_effects_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (v TEXT NOT NULL)")
    yield table
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {table}")


def _rows(table: str) -> list[str]:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        return [r[0] for r in conn.execute(f"SELECT v FROM {table} ORDER BY v")]


async def test_postgres_effect_and_mark_commit_together(
    postgres_pair: tuple[PostgresIdempotencyStore, PostgresIdempotencyStore], effects_table: str
) -> None:
    first, second = postgres_pair
    assert isinstance(first, TransactionalIdempotencyStore)
    group = _group()
    assert await first.complete_with(group, "m", _insert_effect(effects_table, "a")) == "a"
    again = await second.complete_with(group, "m", _insert_effect(effects_table, "b"))
    assert again == Duplicate(scope=group, message_id="m")
    assert await second.is_done(group, "m")
    assert _rows(effects_table) == ["a"]


async def test_postgres_failed_effect_rolls_back_the_mark_too(
    postgres_pair: tuple[PostgresIdempotencyStore, PostgresIdempotencyStore], effects_table: str
) -> None:
    store, _ = postgres_pair
    group = _group()

    def failing(conn: Any) -> None:
        conn.execute(f"INSERT INTO {effects_table} (v) VALUES ('half')")
        raise RuntimeError("effect failed")

    with pytest.raises(RuntimeError, match="effect failed"):
        await store.complete_with(group, "m", failing)
    assert not await store.is_done(group, "m")
    assert _rows(effects_table) == []
    assert await store.complete_with(group, "m", _insert_effect(effects_table, "ok")) == "ok"
    assert _rows(effects_table) == ["ok"]


async def test_postgres_racing_workers_run_the_effect_once(
    postgres_pair: tuple[PostgresIdempotencyStore, PostgresIdempotencyStore], effects_table: str
) -> None:
    group = _group()
    results = await asyncio.gather(
        *(
            store.complete_with(group, f"m-{i}", _insert_effect(effects_table, f"{i}-{n}"))
            for i in range(20)
            for n, store in enumerate(postgres_pair)
        )
    )
    duplicates = [r for r in results if isinstance(r, Duplicate)]
    assert len(duplicates) == 20
    assert len(_rows(effects_table)) == 20
    assert {r.split("-")[0] for r in _rows(effects_table)} == {str(i) for i in range(20)}


async def test_postgres_effect_that_commits_itself_is_refused(
    postgres_pair: tuple[PostgresIdempotencyStore, PostgresIdempotencyStore],
) -> None:
    store, _ = postgres_pair

    def commits(conn: Any) -> None:
        conn.execute("COMMIT")

    with pytest.raises(Exception, match="committed or rolled back"):
        await store.complete_with(_group(), "m", commits)


async def test_a_store_is_chosen_by_url(tmp_path: Any) -> None:
    from eventwire import MemoryIdempotencyStore, SQLiteIdempotencyStore, open_idempotency_store

    assert isinstance(open_idempotency_store("memory://"), MemoryIdempotencyStore)
    sqlite = open_idempotency_store(f"sqlite:///{tmp_path}/marks.db")
    assert isinstance(sqlite, SQLiteIdempotencyStore)
    assert sqlite.path == tmp_path / "marks.db"
    assert isinstance(open_idempotency_store(REDIS_URL, ttl=5), RedisIdempotencyStore)
    assert isinstance(open_idempotency_store(POSTGRES_URL), PostgresIdempotencyStore)
    with pytest.raises(ConfigurationError, match="no known scheme") as info:
        open_idempotency_store("mysql://u:hunter2@h/db")
    assert "hunter2" not in str(info.value)


def test_importing_eventwire_loads_no_store_client() -> None:
    import subprocess
    import sys

    code = (
        "import sys, eventwire; eventwire.open_idempotency_store('memory://'); "
        "print(sorted(m for m in ('redis', 'psycopg') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
