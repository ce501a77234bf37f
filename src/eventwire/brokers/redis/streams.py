"""Broker layer: ``RedisStreamsBroker``, at-least-once messaging on Redis Streams."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from redis import exceptions as rex
from redis.asyncio.client import Pipeline

from eventwire.brokers._support.envelope import EnvelopeError, unreadable
from eventwire.brokers._support.errors import translate
from eventwire.brokers._support.lifecycle import BrokerBase
from eventwire.brokers.redis.broadcast import BroadcastSubscription
from eventwire.brokers.redis.connection import make_client
from eventwire.brokers.redis.envelope import RAW_ENTRY_FORMAT, from_fields, raw_entry, to_fields
from eventwire.brokers.redis.errors import REDIS
from eventwire.brokers.redis.group import GroupSubscription
from eventwire.brokers.redis.link import RedisLink
from eventwire.brokers.redis.options import RedisOptions
from eventwire.brokers.redis.publisher import PublishQueue
from eventwire.brokers.redis.subscription import Subscription
from eventwire.core.capabilities import BrokerProfile
from eventwire.core.contract import Health
from eventwire.core.message import DEAD_LETTER_GROUP, Message, dead_letter_topic
from eventwire.core.url import BrokerURL


class RedisStreamsBroker(BrokerBase):
    """One stream per topic (``<prefix><topic>``), consumer groups, a dead-letter stream each.

    One connection pool per broker object serves every publish and subscription (a blocked
    XREADGROUP holds one pooled connection per subscription; publishes share pipelines, see
    ``PublishQueue``). Publishing during an outage retries with backoff for up to
    ``publish_timeout`` seconds, at most ``max_buffered`` messages waiting, then raises
    ``PublishError``; a publish that returned was accepted by Redis. A retried publish whose
    first try reached Redis before the connection dropped is stored twice: consumers
    de-duplicate by message id (at-least-once).

    What survives what: a connection cut loses nothing (entries whose reply was lost are
    taken back from this consumer's PEL at once). A server restart keeps what the server
    persisted: with ``appendonly yes`` + ``appendfsync always`` everything acknowledged; with
    no persistence the streams, groups, pending entries and retry schedules are gone and
    consumers re-create their groups (at id 0) and carry on with new messages.

    Retention: group members trim their stream to what every group has acknowledged
    (``scripts.TRIM``, XTRIM MINID at the slowest group's oldest unsettled entry, every
    ``claim_idle / 3`` seconds); a stream no group reads yet is kept whole. A user-set
    ``maxlen`` also cuts the stream to that many entries, unread ones included: each such
    drop is logged and counted (``eventwire_retention_dropped_total``). Dead-letter streams
    are never trimmed by a limit, only of the letters a replay acknowledged.
    """

    def __init__(self, url: BrokerURL, profile: BrokerProfile) -> None:
        super().__init__(url, profile)
        self.options = RedisOptions.from_url(url)
        self.client = make_client(url, self.options)
        # What the children (subscriptions, publish queue) get instead of the broker.
        self.link = RedisLink(
            client=self.client, url=url, options=self.options, profile=profile.name
        )
        self._publisher = PublishQueue(
            self.link, encode=self.encode, queue_publish=self.queue_publish
        )

    async def _connect(self) -> None:
        try:
            await self.link.bounded(
                self.client.ping(), self.options.connect_timeout + self.options.socket_timeout
            )
        except (rex.RedisError, OSError) as exc:
            raise translate(REDIS, exc, self.url, "connecting") from exc

    async def _publish(self, topic: str, messages: tuple[Message, ...]) -> None:
        await self._publisher.publish(topic, messages)

    def encode(self, messages: tuple[Message, ...]) -> list[Any]:
        """Messages in wire form, encoded once even if the publish is retried."""
        return [to_fields(m) for m in messages]

    def queue_publish(self, pipe: Pipeline, topic: str, encoded: list[Any]) -> None:
        # No MAXLEN here: trimming at XADD cannot tell read entries from unread ones.
        key = self.link.stream_key(topic)
        for fields in encoded:
            pipe.xadd(key, fields)

    async def trim(self, topic: str) -> int:
        """See ``RedisLink.trim`` (group members call it every ``claim_idle / 3`` seconds)."""
        return await self.link.trim(topic)

    def _subscribe(self, topic: str, group: str | None, prefetch: int) -> Subscription:
        if group is None:
            return BroadcastSubscription(self.link, topic, prefetch)
        return GroupSubscription(self.link, topic, group, prefetch)

    async def browse_dead_letters(self, topic: str, limit: int) -> list[Message] | None:
        """Dead letters of ``topic`` the ``eventwire-dlq`` group has not acknowledged (pending
        in it, or not yet delivered to it), read with XINFO/XPENDING/XRANGE: no stream,
        group or consumer is created. None if the topic has no dead-letter stream."""
        await self.connect()
        client = self.client
        key = self.link.stream_key(dead_letter_topic(topic))

        async def read() -> list[Message] | None:
            if not await client.exists(key):
                return None
            groups = await client.xinfo_groups(key)
            mine = [g for g in groups if _text(g.get("name")) == DEAD_LETTER_GROUP]
            entries: list[tuple[bytes, dict[bytes, bytes]]] = []
            start: str = "-"
            if mine:
                pending = await client.xpending_range(key, DEAD_LETTER_GROUP, "-", "+", limit)
                for row in pending:
                    found = await client.xrange(key, row["message_id"], row["message_id"])
                    entries += cast("list[tuple[bytes, dict[bytes, bytes]]]", found)
                start = "(" + _text(mine[0].get("last-delivered-id"))
            found = await client.xrange(key, start, "+", count=limit)
            entries += cast("list[tuple[bytes, dict[bytes, bytes]]]", found)
            out: list[Message] = []
            for entry_id, fields in sorted(entries)[:limit]:
                try:
                    out.append(from_fields(fields))
                except EnvelopeError as exc:
                    out.append(
                        unreadable(
                            raw_entry(fields),
                            why=str(exc),
                            topic=dead_letter_topic(topic),
                            group=None,
                            raw_format=RAW_ENTRY_FORMAT,
                            message_id=_text(entry_id),
                        )
                    )
            return out

        return await self.link.call(
            lambda: self.link.bounded(read()), f"reading the dead letters of {topic!r}"
        )

    async def _flush_publishes(self) -> None:
        # Calls already made get their answer (or fail by their own deadline) before the
        # pool goes; new calls already get ClosedError.
        await self._publisher.drain(self.options.publish_timeout)
        await self._publisher.aclose()

    async def _close_connection(self) -> None:
        await self.client.aclose(close_connection_pool=True)

    async def _health(self) -> Health:
        try:
            await asyncio.wait_for(self.client.ping(), self.options.socket_timeout)
        except (rex.RedisError, OSError) as exc:
            return Health(ok=False, detail=str(translate(REDIS, exc, self.url, "pinging")))
        return Health(ok=True, detail=f"connected to {self.url}")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
