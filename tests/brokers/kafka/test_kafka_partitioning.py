"""Tests: keyless records spread over a topic's partitions (shared Kafka), so every member of
a competing group gets work; keyed records keep one partition per key."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest
from confluent_kafka import Consumer, TopicPartition

from brokers.kafka.kafka_support import open_kafka, topic_name
from eventwire.core.message import Message
from eventwire.testing.services import service_url

pytestmark = [pytest.mark.integration, pytest.mark.kafka]


def partitions_of(bootstrap: str, topic: str, expected: int) -> list[tuple[int, bytes]]:
    """(partition, key) of every record of ``topic``, read from the start (raw client)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"ewt-{uuid.uuid4().hex}",
         "enable.auto.commit": False}
    )  # fmt: skip
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(4)])
        seen: list[tuple[int, bytes]] = []
        for _ in range(120):
            if len(seen) >= expected:
                break
            records = consumer.consume(num_messages=500, timeout=0.5)
            seen.extend((r.partition() or 0, r.key() or b"") for r in records if r.error() is None)
        return seen
    finally:
        consumer.close()


async def test_keyless_records_spread_and_keys_stay_put() -> None:
    url = service_url("kafka")
    bootstrap = url.removeprefix("kafka://").split("?")[0]
    broker = await open_kafka(url)
    topic = topic_name("spread")
    try:
        # One burst, as a publisher's batch.
        await broker.publish(topic, *(Message(body=b"x") for _ in range(200)))
        await broker.publish(topic, *(Message(body=b"y", key=f"k{n % 8}") for n in range(80)))
        seen = await asyncio.to_thread(partitions_of, bootstrap, topic, 280)
    finally:
        await broker.delete_topics([topic])
        await broker.aclose()
    assert len(seen) == 280
    keyless = Counter(p for p, key in seen if not key)
    assert len(keyless) == 4, f"200 keyless records landed on partitions {dict(keyless)}"
    assert min(keyless.values()) >= 20, dict(keyless)
    by_key: dict[bytes, set[int]] = {}
    for partition, key in seen:
        if key:
            by_key.setdefault(key, set()).add(partition)
    assert all(len(parts) == 1 for parts in by_key.values()), by_key
