"""Broker layer: ``RedisLink``, what a Redis broker's children use of it: one client, keys, calls.

Subscriptions, the publish queue, the ack batcher and the pending-entries work receive this
link, never the broker: it holds the pooled client, the URL (for messages), the options and
the registered Lua scripts, names the keys, bounds and retries calls, and writes dead letters
and trims streams. The broker builds one and hands it down, so nobody changing the broker
has to read its children, and a child cannot reach back up.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from eventwire.brokers._support.envelope import unreadable
from eventwire.brokers._support.retention import dropped_unread
from eventwire.brokers.redis import scripts
from eventwire.brokers.redis.connection import bounded, log, retry_until
from eventwire.brokers.redis.envelope import (
    F_ID,
    RAW_ENTRY_FORMAT,
    RAW_PAYLOAD_FORMAT,
    raw_entry,
    to_fields,
)
from eventwire.brokers.redis.options import RedisOptions
from eventwire.core.errors import BrokerError
from eventwire.core.message import Message, dead_letter_topic
from eventwire.core.url import BrokerURL

T = TypeVar("T")


class RedisLink:
    """One broker object's client, URL, options and scripts, and the calls built on them."""

    def __init__(
        self, *, client: aioredis.Redis, url: BrokerURL, options: RedisOptions, profile: str
    ) -> None:
        self.client = client
        self.url = url
        self.options = options
        self._profile = profile  # the profile name retention drops are counted under
        self.scripts: dict[str, AsyncScript] = {
            "move_due": client.register_script(scripts.MOVE_DUE),
            "reclaim": client.register_script(scripts.RECLAIM),
            "release": client.register_script(scripts.RELEASE),
            "sweep": client.register_script(scripts.SWEEP),
            "dead_letter": client.register_script(scripts.DEAD_LETTER),
            "trim": client.register_script(scripts.TRIM),
        }

    async def bounded(self, awaitable: Awaitable[T], seconds: float | None = None) -> T:
        """``awaitable`` within ``seconds`` (default ``socket_timeout``), else TimeoutError
        and the pool's idle connections are dropped (see ``connection.bounded``)."""
        limit = self.options.socket_timeout if seconds is None else seconds
        return await bounded(awaitable, limit, self.client.connection_pool)

    @property
    def read_limit(self) -> float:
        """Deadline of a blocking read: the block time plus the dead-connection timeout."""
        return self.options.block + self.options.socket_timeout

    def stream_key(self, topic: str) -> str:
        return self.options.prefix + topic

    def schedule_key(self, topic: str, group: str) -> str:
        # ':' is not allowed in topic names, so this never collides with a stream key.
        return f"{self.options.prefix}{topic}:retry:{group}"

    async def call(self, action: Callable[[], Awaitable[T]], doing: str) -> T:
        """Run ``action``, riding out an outage up to ``publish_timeout``; errors translated."""
        return await retry_until(
            action,
            deadline=time.monotonic() + self.options.publish_timeout,
            url=self.url,
            doing=doing,
            cap=self.options.backoff_cap,
            error=BrokerError,
        )

    async def trim(self, topic: str) -> int:
        """Trim ``topic``'s stream (and its dead-letter stream) to what every group has
        acknowledged; with a user-set ``maxlen`` also to that length, reporting unread
        entries it dropped. Returns how many entries went."""
        total = 0
        for name, maxlen in ((topic, self.options.maxlen), (dead_letter_topic(topic), 0)):
            trimmed, dropped = await self.bounded(
                self.scripts["trim"](keys=[self.stream_key(name)], args=[maxlen])
            )
            dropped_unread(self._profile, name, int(dropped), limit=f"maxlen={maxlen}")
            total += int(trimmed) + int(dropped)
        return total

    async def move_to_dead_letter(
        self, topic: str, group: str | None, entry_id: bytes, dead: Message
    ) -> None:
        """XADD ``dead`` to the dead-letter stream, then XACK the original (one script: the
        XACK runs only if the XADD succeeded, see ``scripts.DEAD_LETTER``)."""
        keys = [self.stream_key(dead_letter_topic(topic)), self.stream_key(topic)]
        args: list[Any] = [group or "", entry_id, 0]  # dead letters are never cut by maxlen
        for name, value in to_fields(dead).items():
            args += [name, value]

        async def move() -> None:
            await self.bounded(self.scripts["dead_letter"](keys=keys, args=args))

        await self.call(move, f"dead-lettering a message of {topic!r}")

    async def dead_letter_raw(
        self, topic: str, group: str, entry_id: bytes, fields: dict[bytes, bytes], why: str
    ) -> None:
        """An entry eventwire cannot read: all its fields, byte for byte, go to the DLQ as the
        body of a raw dead letter (``envelope.raw_entry``), reason ``unreadable envelope``."""
        log.warning(
            "redis entry %r on %r is not an eventwire message; dead-lettering it: %s",
            entry_id,
            topic,
            why,
        )
        raw_id = fields.get(F_ID)
        dead = unreadable(
            raw_entry(fields),
            why=why,
            topic=topic,
            group=group,
            raw_format=RAW_ENTRY_FORMAT,
            message_id=raw_id.decode("utf-8", "replace") if isinstance(raw_id, bytes) else None,
        )
        await self.move_to_dead_letter(topic, group, entry_id, dead)

    async def dead_letter_payload(self, topic: str, payload: bytes, why: str) -> None:
        """A Pub/Sub payload eventwire cannot read: its bytes, unchanged, as a raw dead letter."""
        log.warning("redis pubsub message on %r is unreadable; dead-lettering it: %s", topic, why)
        dead = unreadable(payload, why=why, topic=topic, group=None, raw_format=RAW_PAYLOAD_FORMAT)
        await self.move_to_dead_letter(topic, None, b"", dead)
