"""Broker layer: raw redis-py doing what ``eventwire bench`` measures, and the run's clean-up.

The same work as the adapter's Redis Streams path, the way redis-py's own documentation
does it: ``XADD`` per message (the reply is the confirmation), ``XREADGROUP`` of up to 100
entries, ``json.loads`` of each body and one ``XACK`` per batch. Loaded by the bench
command through its module name, so the CLI never imports redis itself.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import redis.asyncio as aioredis

from eventwire.brokers.redis.options import RedisOptions
from eventwire.core.contract import Broker
from eventwire.core.url import BrokerURL

CLIENT = f"redis-py {version('redis')}"
PREFETCH = 100
POOL = 64  # connections for concurrent publishes
_GROUP = "raw"


class RawDriver:
    """redis-py on one stream and one consumer group."""

    def __init__(self, url: BrokerURL, topic: str) -> None:
        # Concurrent commands each take a pooled connection: a bounded pool that makes callers
        # wait (redis-py's advice for many concurrent tasks) instead of failing past its size.
        pool = aioredis.BlockingConnectionPool.from_url(
            url.secret().partition("?")[0], max_connections=POOL
        )
        self._client = aioredis.Redis(connection_pool=pool)
        self._key = f"{RedisOptions.from_url(url).prefix}{topic}:raw"  # remove_run matches it too

    async def open(self) -> None:
        await self._client.xgroup_create(self._key, _GROUP, id="0", mkstream=True)

    async def publish(self, body: bytes) -> None:
        await self._client.xadd(self._key, {"id": uuid.uuid4().hex, "body": body})

    async def start_live(self) -> None:
        """Nothing to prepare: the same consumer reads the latency phase."""

    async def consume(
        self, count: int, each: Callable[[object], None], *, live: bool = False
    ) -> None:
        done = 0
        while done < count:
            reply: Any = await self._client.xreadgroup(
                _GROUP, "c1", {self._key: ">"}, count=min(PREFETCH, count - done), block=1000
            )
            streams: Any = reply.items() if isinstance(reply, dict) else (reply or ())
            for _stream, entries in streams:
                ids = []
                for entry_id, fields in entries:
                    each(json.loads(fields[b"body"]))
                    ids.append(entry_id)
                await self._client.xack(self._key, _GROUP, *ids)
                done += len(ids)

    async def aclose(self) -> None:
        try:
            await self._client.delete(self._key)
        finally:
            await self._client.aclose()
            await self._client.connection_pool.disconnect()


async def remove_run(url: BrokerURL, topic: str, group: str, brokers: list[Broker]) -> None:
    """Delete the keys the adapter made for ``topic`` (stream, DLQ stream, retry schedules);
    the topic is the run's own, so nothing else matches."""
    prefix = RedisOptions.from_url(url).prefix
    client = aioredis.Redis.from_url(url.secret().partition("?")[0])
    try:
        pattern = f"{_glob_escape(prefix + topic)}*"
        keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start : start + 500])
    finally:
        await client.aclose()


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]\\" else c for c in text)
