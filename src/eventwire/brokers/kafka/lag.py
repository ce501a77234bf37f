"""Broker layer: a Kafka group's backlog: committed offset vs high watermark per partition.

The reader keeps one librdkafka ``Consumer`` per group it reads, configured with that
``group.id`` but never subscribed, so it does not join the group (no rebalance) and creates
nothing: ``committed`` and the watermarks are plain metadata requests, run in a worker thread.
A partition the group never committed to counts from its low watermark (a new group starts
at the earliest retained offset). A committed offset covers both what waits and what is
being handled, so ``unacked`` is None.

Redeliveries wait in the retry topics (``<topic>.retry.<n>``, read by the group
``<group>.retry``), so their lag is added (partition labels ``retry.<n>:<p>``; the main
topic's are plain ``<p>``). Retry topics are shared by every group of a topic: with several
groups, a copy meant for another group counts here until this group's consumer skips it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Final

from confluent_kafka import Consumer, KafkaException, TopicPartition

from eventwire.brokers.kafka.broker import KafkaBroker
from eventwire.brokers.kafka.errors import translate
from eventwire.brokers.kafka.options import KafkaOptions
from eventwire.brokers.kafka.topics import RETRY_INFIX, retry_group, retry_topics
from eventwire.core.contract import Broker
from eventwire.core.errors import ConnectionLostError
from eventwire.core.lag import Backlog, LagReader

_METADATA_TTL: Final = 30.0  # seconds a topic's partition list is reused


class KafkaLagReader:
    """Per-group metadata consumers, created on the first read of each group."""

    def __init__(self, options: KafkaOptions, where: str) -> None:
        self._options = options
        self._where = where
        self._consumers: dict[str, Consumer] = {}
        self._metadata: dict[str, tuple[float, list[TopicPartition]]] = {}
        self._lock = threading.Lock()  # reads run in worker threads

    async def read(self, topic: str, group: str) -> Backlog | None:
        # A read the caller gave up on (timeout) still runs in its thread until librdkafka's
        # own timeouts end it; starting more behind it would only pile up blocked threads.
        if self._lock.locked():
            raise ConnectionLostError(
                f"reading the lag of {group!r} on {topic!r} on kafka at {self._where}: "
                "the previous read has not returned yet"
            )
        try:
            partitions = await asyncio.to_thread(self._read, topic, group)
        except KafkaException as exc:
            raise translate(
                exc,
                f"reading the lag of {group!r} on {topic!r}",
                self._where,
                self._options.password,
            ) from exc
        if partitions is None:
            return None
        return Backlog(waiting=sum(partitions.values()), partitions=partitions)

    def _read(self, topic: str, group: str) -> dict[str, int] | None:
        with self._lock:
            main = self._partitions(group, topic)
            if not main:
                return None  # no such topic yet
            retries = [tp for name in retry_topics(topic) for tp in self._partitions(group, name)]
            lags = self._lags(group, main, lambda tp: str(tp.partition))
            if retries:
                prefix = len(topic) + len(RETRY_INFIX)

                def label(tp: TopicPartition) -> str:
                    return f"retry.{tp.topic[prefix:]}:{tp.partition}"

                lags.update(self._lags(retry_group(group), retries, label))
            return lags

    def _consumer(self, group: str) -> Consumer:
        consumer = self._consumers.get(group)
        if consumer is None:
            config = self._options.consumer_config(group, from_earliest=True)
            consumer = self._consumers[group] = Consumer(config)
        return consumer

    def _partitions(self, group: str, topic: str) -> list[TopicPartition]:
        """``topic``'s partitions (none if it does not exist), from metadata at most
        ``_METADATA_TTL`` seconds old once found: partitions are rarely added, and reads come
        every few seconds."""
        now = time.monotonic()
        known = self._metadata.get(topic)
        if known is not None and now - known[0] < _METADATA_TTL:
            return known[1]
        consumer = self._consumer(group)
        described = consumer.list_topics(topic, timeout=self._options.socket_timeout)
        found = described.topics.get(topic)
        if found is None or found.error is not None:
            return []  # not remembered: it may be created any moment
        partitions = [TopicPartition(topic, p) for p in sorted(found.partitions)]
        self._metadata[topic] = (now, partitions)
        return partitions

    def _lags(
        self, group: str, partitions: list[TopicPartition], label: Callable[[TopicPartition], str]
    ) -> dict[str, int]:
        """``group``'s lag on each of ``partitions``: one committed-offsets request for all of
        them, then each partition's watermarks."""
        consumer, timeout = self._consumer(group), self._options.socket_timeout
        lags: dict[str, int] = {}
        for tp in consumer.committed(partitions, timeout=timeout):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), timeout=timeout, cached=False
            )
            start = tp.offset if tp.offset >= 0 else low
            lags[label(tp)] = max(high - start, 0)
        return lags

    async def aclose(self) -> None:
        await asyncio.to_thread(self._lock.acquire)  # a read under way finishes first
        try:
            consumers, self._consumers = list(self._consumers.values()), {}
        finally:
            self._lock.release()
        for consumer in consumers:
            await asyncio.to_thread(consumer.close)


def open_reader(broker: Broker) -> LagReader | None:
    """A reader for a ``KafkaBroker``'s cluster (same options, its own clients)."""
    assert isinstance(broker, KafkaBroker)
    return KafkaLagReader(broker.options, str(broker.url))
