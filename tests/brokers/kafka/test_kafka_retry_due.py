"""A far due time written into a Kafka retry topic does not pause that partition (shared Kafka).

Whoever can write to ``<topic>.retry.<n>`` could otherwise park its partition until the year
5138 with ``x-eventwire-due: 1e11``: the consumer waits at most the level's delay (1 s on
level 1) after fetching a copy, whatever its header says.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from confluent_kafka import Producer

from brokers.kafka.kafka_support import open_kafka, topic_name
from eventwire.brokers.kafka import envelope, topics
from eventwire.core import headers as h
from eventwire.core.message import Delivery

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

SHARED = "kafka://127.0.0.1:9092?partitions=1"


def _produce(topic: str, headers: list[tuple[str, str | bytes | None]]) -> None:
    producer = Producer({"bootstrap.servers": "127.0.0.1:9092", "enable.idempotence": True})
    producer.produce(topic, value=b'{"n": 1}', headers=headers)
    assert producer.flush(30) == 0, "record not delivered"


async def test_a_forged_far_due_time_waits_only_the_level_delay() -> None:
    topic, group = topic_name("due"), "due-group"
    broker = await open_kafka(SHARED)
    try:
        async with broker.subscribe(topic, group=group, prefetch=10) as sub:
            retry = topics.retry_topic(topic, 1)  # level 1: copies delayed by up to 1 s
            forged: list[tuple[str, str | bytes | None]] = [
                (h.MESSAGE_ID, b"forged-due"),
                (h.ATTEMPT, b"2"),
                (envelope.RETRY_GROUP, group.encode()),
                (envelope.DUE, b"1e11"),  # the year 5138
            ]
            sent = time.monotonic()
            await asyncio.to_thread(_produce, retry, forged)
            async with asyncio.timeout(30):
                delivery: Delivery = await anext(sub)
            waited = time.monotonic() - sent
            await delivery.ack()
        assert delivery.message.id == "forged-due"
        assert delivery.attempt == 2
        print(f"forged due 1e11 on {retry}: delivered after {waited:.2f} s")
    finally:
        await broker.delete_topics(broker.created_topics)
        await broker.aclose()
