"""JetStream retention: no age limit by default (dead letters included), purged to what every
group acknowledged, and a user-set limit that drops unread messages is logged and counted."""

from __future__ import annotations

import asyncio
import logging

import nats
import pytest

from brokers.nats.nats_support import SHARED, url_for
from eventwire.brokers._support.retention import dropped_counts
from eventwire.brokers.catalog import open_broker
from eventwire.core.message import Message, dead_letter_topic

pytestmark = [pytest.mark.integration, pytest.mark.nats]

COUNT = 200


async def _stream(name: str) -> tuple[object, int]:
    nc = await nats.connect(f"nats://{SHARED}")
    try:
        info = await nc.jetstream().stream_info(name)
    finally:
        await nc.close()
    return info.config, int(info.state.messages or 0)


async def _ack_all(url: str, topic: str, group: str, count: int) -> int:
    got = 0
    async with open_broker(url) as broker, broker.subscribe(topic, group=group) as deliveries:
        async with asyncio.timeout(30):
            async for delivery in deliveries:
                await delivery.ack()
                got += 1
                if got == count:
                    break
    return got


async def test_streams_and_dead_letter_streams_have_no_age_limit_by_default(prefix: str) -> None:
    # On main: retention=limits with max_age 7 days on every stream, the .dlq ones too.
    url = url_for(SHARED, prefix)
    topic = "ret.default"
    async with open_broker(url) as broker:
        async with broker.subscribe(topic, group="g"):
            pass
        options = broker.options  # type: ignore[attr-defined]  # NATS adapter's own options, not on the Broker protocol
        for name in (topic, dead_letter_topic(topic)):
            config, _ = await _stream(options.stream(name))
            assert config.max_age in (0, None), name  # type: ignore[attr-defined]  # nats-py's StreamConfig, reached through the untyped options
            assert config.max_msgs in (-1, None), name  # type: ignore[attr-defined]  # nats-py's StreamConfig, reached through the untyped options
            assert config.max_bytes in (-1, None), name  # type: ignore[attr-defined]  # nats-py's StreamConfig, reached through the untyped options


async def test_a_stopped_group_keeps_its_messages_and_acked_ones_are_purged(prefix: str) -> None:
    url = url_for(SHARED, prefix, trim_interval=0.2)
    topic = "ret.floor"
    async with open_broker(url) as broker:
        async with broker.subscribe(topic, group="slow"):
            pass  # the group exists; its worker is stopped
        await broker.publish(topic, *(Message(body=b"x") for _ in range(COUNT)))
        stream = broker.options.stream(topic)  # type: ignore[attr-defined]  # NATS adapter's own options, not on the Broker protocol
        assert await _ack_all(url, topic, "fast", COUNT) == COUNT
        assert await broker.trim(topic) == 0  # type: ignore[attr-defined]  # NATS adapter's own trim(), not on the Broker protocol
        assert (await _stream(stream))[1] == COUNT, "purged what the stopped group needs"
        assert await _ack_all(url, topic, "slow", COUNT) == COUNT
        await broker.trim(topic)  # type: ignore[attr-defined]  # NATS adapter's own trim(), not on the Broker protocol
        assert (await _stream(stream))[1] <= 1


async def test_a_user_limit_that_drops_unread_messages_is_logged_and_counted(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = url_for(SHARED, prefix, max_msgs=50)
    topic = "ret.limit"
    async with open_broker(url) as broker:
        async with broker.subscribe(topic, group="slow"):
            pass
        await broker.publish(topic, *(Message(body=b"x") for _ in range(COUNT)))
        before = dropped_counts().get(("nats-jetstream", topic), 0)
        with caplog.at_level(logging.WARNING, logger="eventwire.brokers.retention"):
            await broker.trim(topic)  # type: ignore[attr-defined]  # NATS adapter's own trim(), not on the Broker protocol
            await broker.trim(topic)  # type: ignore[attr-defined]  # counted once
    assert dropped_counts()[("nats-jetstream", topic)] - before == COUNT - 50
    assert any("max_msgs=50" in r.getMessage() for r in caplog.records)
