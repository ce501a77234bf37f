"""Broker layer: ``RedisPubSubBroker``, at-most-once fan-out on Redis PUBLISH/SUBSCRIBE."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from logging import ERROR
from typing import Any

from redis import exceptions as rex
from redis.asyncio.client import Pipeline, PubSub

from eventwire.brokers._support.envelope import EnvelopeError
from eventwire.brokers.redis.connection import log, retry_streak
from eventwire.brokers.redis.envelope import from_payload, to_payload
from eventwire.brokers.redis.errors import TRANSIENT
from eventwire.brokers.redis.group import GroupSubscription
from eventwire.brokers.redis.link import RedisLink
from eventwire.brokers.redis.streams import RedisStreamsBroker
from eventwire.brokers.redis.subscription import RedisDelivery, Subscription
from eventwire.core.errors import ConfigurationError, EventwireError
from eventwire.core.message import (
    DEAD_LETTER_GROUP,
    DEAD_LETTER_SUFFIX,
    Message,
    dead_letter_topic,
)

_DROP_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT, RuntimeError)


_KEEPALIVE = "eventwire-keepalive"


class RedisPubSubBroker(RedisStreamsBroker):
    """Topics are Pub/Sub channels (``<prefix><topic>``): whoever is subscribed right now gets
    each message once; nobody subscribed, a disconnect or a full window loses it.

    ``publish`` returns once Redis took the PUBLISH (not once anybody received it). ack and
    nack settle locally and do nothing else: Pub/Sub cannot redeliver. ``dead_letter`` is
    the one durable path: dead letters are appended to the Redis *stream*
    ``<prefix><topic>.dlq`` (created with group ``eventwire-dlq`` when the topic is
    subscribed), read with ``subscribe(dead_letter_topic(topic), group=DEAD_LETTER_GROUP)``
    exactly as on the Streams profile, so a dead letter is never silently dropped.
    A subscriber whose prefetch window is full stops reading; Redis buffers for it until its
    ``client-output-buffer-limit pubsub`` and then drops the connection (the subscriber
    re-subscribes; what was buffered is lost, as at-most-once allows).
    """

    def encode(self, messages: tuple[Message, ...]) -> list[Any]:
        return [to_payload(m) for m in messages]

    def queue_publish(self, pipe: Pipeline, topic: str, encoded: list[Any]) -> None:
        channel = self.link.stream_key(topic)
        for payload in encoded:
            pipe.publish(channel, payload)

    def _subscribe(self, topic: str, group: str | None, prefetch: int) -> Subscription:
        if group == DEAD_LETTER_GROUP and topic.endswith(DEAD_LETTER_SUFFIX):
            return GroupSubscription(self.link, topic, group, prefetch)
        if group is not None:
            raise ConfigurationError(
                f"redis-pubsub has no consumer groups (asked for {group!r}): subscribe without "
                "a group to get every message, or use a redis:// (Streams) URL for groups"
            )
        return ChannelSubscription(self.link, topic, prefetch)


class ChannelSubscription(Subscription):
    """One SUBSCRIBE on its own connection; re-subscribes after a cut (messages sent
    meanwhile are lost: at-most-once)."""

    def __init__(self, link: RedisLink, topic: str, prefetch: int) -> None:
        super().__init__(link, topic=topic, group=None, prefetch=prefetch)
        self._pubsub: PubSub | None = None
        self._ids = itertools.count(1)
        self._raw: set[asyncio.Task[None]] = set()  # raw dead letters being written

    async def start(self) -> None:
        dlq = self._link.stream_key(dead_letter_topic(self.topic))

        async def prepare() -> None:
            await self._ensure_dlq_group(dlq)
            await self._connect()

        await self._link.call(prepare, f"subscribing to {self.topic!r}")
        self.spawn(self._read_loop, "pubsub")

    async def _ensure_dlq_group(self, key: str) -> None:
        try:
            await self._link.bounded(
                self._link.client.xgroup_create(key, DEAD_LETTER_GROUP, id="0", mkstream=True),
                self._link.options.socket_timeout,
            )
        except rex.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _connect(self) -> None:
        """SUBSCRIBE and wait for Redis's confirmation: from then on publishes reach us."""
        await self._drop()
        pubsub = self._link.client.pubsub()
        self._pubsub = pubsub
        timeout = self._link.options.socket_timeout
        await self._link.bounded(pubsub.subscribe(self._key), timeout)
        while True:
            reply = await pubsub.get_message(timeout=timeout)
            if reply is None:
                raise TimeoutError(f"no SUBSCRIBE confirmation within {timeout} s")
            if reply["type"] == "subscribe":
                return

    async def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            # A broken connection is being thrown away anyway.
            with contextlib.suppress(*_DROP_ERRORS):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _read_loop(self) -> None:
        options = self._link.options
        backoff = retry_streak(options.backoff_cap)
        # A quiet Pub/Sub connection may be dead (half-open): PING it when quiet for a while
        # and give up on it when even the PONG does not come back within socket_timeout.
        ping_after = max(options.block, 1.0)
        heard = time.monotonic()
        pinged: float | None = None
        while not self.closed:
            await self.wait_room()
            try:
                if self._pubsub is None:
                    await self._connect()
                    heard, pinged = time.monotonic(), None
                    log.info("redis pubsub on %r re-subscribed", self.topic)
                pubsub = self._pubsub
                assert pubsub is not None
                now = time.monotonic()
                if pinged is None and now - heard >= ping_after:
                    await pubsub.ping(_KEEPALIVE)
                    pinged = now
                elif pinged is not None and now - pinged > options.socket_timeout:
                    raise TimeoutError(f"no PONG within {options.socket_timeout} s")
                reply = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                backoff.reset()
            except rex.ResponseError as exc:
                # Refused (e.g. an ACL that no longer allows the channel): loud, and retried
                # with backoff; raising would end this subscriber for good.
                await self._drop()
                refused = "redis refused the subscription to %r: %s; retrying"
                await self.back_off(backoff, exc, refused, ERROR)
                continue
            except TRANSIENT as exc:
                await self._drop()
                await self.back_off(backoff, exc, "redis pubsub on %r failed (%s); re-subscribing")
                continue
            if reply is None:
                continue
            heard, pinged = time.monotonic(), None
            if reply.get("type") == "message":
                self._deliver(reply["data"])

    def _deliver(self, payload: bytes) -> None:
        try:
            message = from_payload(payload)
        except EnvelopeError as exc:
            # Pub/Sub keeps nothing: unless it is dead-lettered now, the payload is gone.
            task = asyncio.create_task(self._dead_letter_raw(payload, str(exc)))
            self._raw.add(task)
            task.add_done_callback(self._raw.discard)
            return
        entry_id = str(next(self._ids)).encode()
        self.admit(RedisDelivery(self, entry_id, message, self.topic, 1))

    async def _dead_letter_raw(self, payload: bytes, why: str) -> None:
        try:
            await self._link.dead_letter_payload(self.topic, payload, why)
        except EventwireError as exc:
            log.error("redis pubsub message on %r lost: not dead-lettered: %s", self.topic, exc)

    def ack_now(self, delivery: RedisDelivery) -> None:
        self.forget(delivery)

    async def settle_nack(self, delivery: RedisDelivery, delay: float | None) -> None:
        self.forget(delivery)  # Pub/Sub keeps nothing to redeliver

    async def settle_dead_letter(self, delivery: RedisDelivery, dead: Message) -> None:
        # Even after the subscription closed: Pub/Sub cannot redeliver, so skipping the
        # write would lose the dead letter (the broker's pool is still open).
        await self._link.move_to_dead_letter(self.topic, None, delivery.entry_id, dead)
        self.forget(delivery)

    async def release(self) -> None:
        await self._drop()
