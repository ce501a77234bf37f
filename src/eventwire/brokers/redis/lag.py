"""Broker layer: a Redis Streams group's backlog from ``XINFO GROUPS``, on a client of its own.

``lag`` (entries the group has not read yet) is the waiting count and ``pending`` (the PEL:
read, not acknowledged, including retries parked in the schedule) the unacked one. Redis
cannot compute ``lag`` after entries were deleted from the middle of the stream (it answers
nil): then the entries after the group's last-delivered id are counted, up to
``_COUNT_LIMIT``. Reading creates nothing: a missing stream or group is "no group yet".
Redis Pub/Sub keeps no backlog, so it has no reader.
"""

from __future__ import annotations

from typing import Any, Final

import redis.exceptions as rex

from eventwire.brokers._support.errors import translate
from eventwire.brokers.redis.connection import bounded, make_client
from eventwire.brokers.redis.errors import REDIS
from eventwire.brokers.redis.options import RedisOptions
from eventwire.brokers.redis.streams import RedisStreamsBroker
from eventwire.core.contract import Broker
from eventwire.core.lag import Backlog, LagReader
from eventwire.core.url import BrokerURL

_COUNT_LIMIT: Final = 10_000


class RedisLagReader:
    """One small pool (its own connections), reading with the adapter's call deadline."""

    def __init__(self, url: BrokerURL, options: RedisOptions) -> None:
        self._url = url
        self._options = options
        self._client = make_client(url, options)

    async def read(self, topic: str, group: str) -> Backlog | None:
        key = self._options.prefix + topic
        client, limit = self._client, self._options.socket_timeout
        try:
            try:
                groups: list[dict[str, Any]] = await bounded(
                    client.xinfo_groups(key), limit, client.connection_pool
                )
            except rex.ResponseError as exc:
                if "no such key" in str(exc).lower():
                    return None
                raise
            found = next((g for g in groups if _text(g.get("name")) == group), None)
            if found is None:
                return None
            lag = found.get("lag")
            if lag is None:  # not computable after deletions: count what follows
                after = "(" + _text(found.get("last-delivered-id"))
                entries = await bounded(
                    client.xrange(key, min=after, count=_COUNT_LIMIT), limit, client.connection_pool
                )
                lag = len(entries or ())
        except (rex.RedisError, OSError, TimeoutError) as exc:
            raise translate(
                REDIS, exc, self._url, f"reading the lag of {group!r} on {topic!r}"
            ) from exc
        return Backlog(waiting=int(lag), unacked=int(found.get("pending") or 0))

    async def aclose(self) -> None:
        await self._client.aclose(close_connection_pool=True)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def open_reader(broker: Broker) -> LagReader | None:
    """A reader for Redis Streams; None for Redis Pub/Sub (no backlog to read)."""
    # By profile: the Pub/Sub broker is a subclass of the Streams one.
    if broker.profile.name != "redis-streams" or not isinstance(broker, RedisStreamsBroker):
        return None
    return RedisLagReader(broker.url, broker.options)
