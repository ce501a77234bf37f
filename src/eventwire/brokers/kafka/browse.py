"""Broker layer: passive reads of a Kafka dead-letter topic (for ``eventwire dlq list``).

What the ``eventwire-dlq`` group has not committed yet, read with a consumer that is given
its partitions (``assign``), never subscribes and never commits: no topic is created, the
group gets no member and its committed offsets do not move. Runs on the caller's thread
(the broker runs it through ``asyncio.to_thread``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from eventwire.brokers.kafka import envelope

_BATCH = 500


@dataclass(frozen=True, slots=True)
class BrowsedRecord:
    """One record as read, for ``envelope.decode``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: envelope.Headers | dict[str, str | bytes | None]
    timestamp_ms: int


def browse(
    config: dict[str, Any], topic: str, limit: int, timeout: float
) -> list[BrowsedRecord] | None:
    """Up to ``limit`` records of ``topic`` after the committed offsets of ``config``'s
    group, oldest first; None when the topic does not exist. ``TimeoutError`` when a
    partition did not reach its end within ``timeout`` (never a silently short list)."""
    consumer = Consumer({**config, "enable.partition.eof": True, "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        described = metadata.topics.get(topic)
        if described is None or described.error is not None:
            return None
        partitions = [TopicPartition(topic, p) for p in sorted(described.partitions)]
        starts = _start_offsets(consumer, partitions, timeout)
        if not starts:
            return []
        consumer.assign([TopicPartition(topic, p, offset) for p, offset in starts.items()])
        found = _read_until_end(consumer, set(starts), limit, timeout)
    finally:
        consumer.close()
    found.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    return found[:limit]


def _start_offsets(
    consumer: Consumer, partitions: list[TopicPartition], timeout: float
) -> dict[int, int]:
    """Per partition with unread records: where the group would go on (committed, or the
    earliest retained offset)."""
    starts: dict[int, int] = {}
    for tp in consumer.committed(partitions, timeout=timeout):
        low, high = consumer.get_watermark_offsets(
            TopicPartition(tp.topic, tp.partition), timeout=timeout
        )
        begin = max(tp.offset, low) if tp.offset >= 0 else low
        if begin < high:
            starts[tp.partition] = begin
    return starts


def _read_until_end(
    consumer: Consumer, open_partitions: set[int], limit: int, timeout: float
) -> list[BrowsedRecord]:
    """Records until every partition reported its end (or gave ``limit``), within timeout."""
    found: list[BrowsedRecord] = []
    per_partition: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while open_partitions and time.monotonic() < deadline:
        for record in consumer.consume(num_messages=_BATCH, timeout=0.2):
            partition = record.partition() or 0
            error = record.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    open_partitions.discard(partition)
                continue
            if partition not in open_partitions:
                continue
            _kind, stamp = record.timestamp()
            found.append(
                BrowsedRecord(
                    topic=record.topic() or "",
                    partition=partition,
                    offset=record.offset() or 0,
                    key=record.key(),
                    value=record.value(),
                    headers=record.headers() or [],
                    timestamp_ms=stamp,
                )
            )
            per_partition[partition] = per_partition.get(partition, 0) + 1
            if per_partition[partition] >= limit:
                open_partitions.discard(partition)  # the oldest `limit` of it are enough
    if open_partitions:
        raise TimeoutError(
            f"partitions {sorted(open_partitions)} not read to their end within {timeout:g} s"
        )
    return found
