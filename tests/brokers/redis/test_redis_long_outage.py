"""Redis under a long outage: consumers retry hundreds of times and never give up (issue 3).

Quick by default (200+ failed reconnects each); EVENTWIRE_TEST_SCALE=full waits for 2,000.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from eventwire.brokers.catalog import open_broker
from eventwire.core.message import Message
from eventwire.testing.fault_proxy import FaultProxy
from eventwire.testing.helpers import scale
from eventwire.testing.spawn import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.redis, pytest.mark.reconnect, pytest.mark.slow]

# The smallest backoff the options allow is any positive cap: 10 ms makes hundreds of
# attempts take seconds. block/socket_timeout are short so the first failure shows fast.
TIGHT = "backoff_cap=0.01&block=0.2&socket_timeout=2&connect_timeout=2&publish_timeout=10"
GROUP_RETRY = "redis read on %r failed (%s); reconnecting"
PUBSUB_RETRY = "redis pubsub on %r failed (%s); re-subscribing"


class CountingProxy(FaultProxy):
    """A fault proxy that also counts the connections it refused (one per reconnect try)."""

    refused = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refuse:
            self.refused += 1
        await super()._accept(reader, writer)


def retries(caplog: pytest.LogCaptureFixture, template: str, topic: str) -> int:
    """How many times the loop logging ``template`` for ``topic`` failed and retried."""
    return sum(
        1
        for r in caplog.records
        if r.msg == template and isinstance(r.args, tuple) and r.args[0] == topic
    )


async def until(check: Callable[[], bool], seconds: float, what: str) -> None:
    async with asyncio.timeout(seconds):
        while not check():
            await asyncio.sleep(0.05)
    assert check(), what


async def test_consumers_outlast_hundreds_of_failed_reconnects(
    private_redis: RedisServer, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eventwire.brokers.redis")
    wanted = scale(200, 2_000)
    stream_topic, channel_topic = f"{topic}.s", f"{topic}.p"
    up = private_redis
    async with (
        CountingProxy(up.host, up.port) as group_proxy,
        CountingProxy(up.host, up.port) as pubsub_proxy,
        open_broker(f"redis://{group_proxy.host}:{group_proxy.port}/0?{TIGHT}") as consumer,
        open_broker(f"redis+pubsub://{pubsub_proxy.host}:{pubsub_proxy.port}/0?{TIGHT}") as fan,
        open_broker(f"{up.url}?{TIGHT}") as direct,
        open_broker(f"redis+pubsub://{up.host}:{up.port}/0?{TIGHT}") as direct_fan,
        aioredis.Redis.from_url(up.url) as raw,
        consumer.subscribe(stream_topic, group="workers") as group_sub,
        fan.subscribe(channel_topic) as channel_sub,
    ):
        for proxy in (group_proxy, pubsub_proxy):
            proxy.refuse()  # the server is "down": every new connection is reset at once
            await proxy.cut()  # ...and the open ones die now
        down_at = time.monotonic()

        def counts() -> tuple[int, int]:
            return (
                retries(caplog, GROUP_RETRY, stream_topic),
                retries(caplog, PUBSUB_RETRY, channel_topic),
            )

        await until(
            lambda: min(counts()) >= wanted,
            scale(120, 600),
            f"fewer than {wanted} retries: {counts()}",
        )
        outage = time.monotonic() - down_at
        group_tries, pubsub_tries = counts()
        refused = (group_proxy.refused, pubsub_proxy.refused)
        for proxy in (group_proxy, pubsub_proxy):
            proxy.heal()
        healed_at = time.monotonic()

        # Pub/Sub is at-most-once: publish once the subscriber is back on the channel
        # (Redis counts it), so the one message cannot fall into the re-subscribe gap.
        channel = f"ew:{channel_topic}".encode()
        async with asyncio.timeout(10):
            while not dict(await raw.pubsub_numsub(channel)).get(channel, 0):
                await asyncio.sleep(0.05)
        after_stream, after_channel = Message(body=b"after-s"), Message(body=b"after-p")
        await direct.publish(stream_topic, after_stream)
        await direct_fan.publish(channel_topic, after_channel)
        left = 10 - (time.monotonic() - healed_at)
        got_stream = await asyncio.wait_for(anext(group_sub), left)
        got_channel = await asyncio.wait_for(
            anext(channel_sub), 10 - (time.monotonic() - healed_at)
        )
        back_in = time.monotonic() - healed_at
        await got_stream.ack()
        await got_channel.ack()
    print(
        f"\nredis long outage: {outage:.1f} s refused; failed reconnects group={group_tries} "
        f"pubsub={pubsub_tries} (proxy refused {refused[0]}/{refused[1]} connections); both "
        f"received a post-heal message {back_in:.2f} s after heal"
    )
    assert got_stream.message.id == after_stream.id
    assert got_channel.message.id == after_channel.id
    assert min(refused) >= wanted  # every retry really tried the network
    assert back_in <= 10
