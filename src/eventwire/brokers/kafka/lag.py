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
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar, cast

from confluent_kafka import Consumer, KafkaException, TopicPartition

from eventwire.brokers.kafka.errors import translate
from eventwire.brokers.kafka.options import KafkaOptions
from eventwire.brokers.kafka.topics import RETRY_INFIX, retry_group, retry_topics
from eventwire.core.contract import Broker
from eventwire.core.errors import ConnectionLostError
from eventwire.core.lag import Backlog, LagReader
from eventwire.core.url import BrokerURL

_T = TypeVar("_T")
_METADATA_TTL: Final = 30.0  # seconds a topic's partition list is reused


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """One partition of a group: its committed offset, the high watermark and the difference."""

    topic: str
    partition: int
    committed: int | None  # None: the group never committed here (it starts per reset policy)
    high_watermark: int
    lag: int


class KafkaLagReader:
    """Per-group metadata consumers, created on the first read of each group."""

    def __init__(self, options: KafkaOptions, url: BrokerURL) -> None:
        self._options = options
        self._url = url
        self._where = str(url)
        self._consumers: dict[str, Consumer] = {}
        self._metadata: dict[str, tuple[float, list[TopicPartition]]] = {}
        self._lock = threading.Lock()  # reads run in worker threads

    async def read(self, topic: str, group: str) -> Backlog | None:
        partitions = await self._in_thread(lambda: self._read(topic, group), topic, group)
        if partitions is None:
            return None
        return Backlog(waiting=sum(partitions.values()), partitions=partitions)

    async def partitions(self, topic: str, group: str) -> list[PartitionLag]:
        """Each partition of ``topic`` (none if it does not exist) for ``group``, without the
        retry topics: committed offset, high watermark and lag."""

        def read() -> list[PartitionLag]:
            with self._lock:
                return self._partition_lags(group, self._partitions(group, topic))

        return await self._in_thread(read, topic, group)

    async def _in_thread(self, read: Callable[[], _T], topic: str, group: str) -> _T:
        # A read the caller gave up on (timeout) still runs in its thread until librdkafka's
        # own timeouts end it; starting more behind it would only pile up blocked threads.
        if self._lock.locked():
            raise ConnectionLostError(
                f"reading the lag of {group!r} on {topic!r} on kafka at {self._where}: "
                "the previous read has not returned yet"
            )
        try:
            return await asyncio.to_thread(read)
        except KafkaException as exc:
            raise translate(exc, f"reading the lag of {group!r} on {topic!r}", self._url) from exc

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
        """``group``'s lag on each of ``partitions``, by ``label``."""
        return {
            label(TopicPartition(p.topic, p.partition)): p.lag
            for p in self._partition_lags(group, partitions)
        }

    def _partition_lags(self, group: str, partitions: list[TopicPartition]) -> list[PartitionLag]:
        """One committed-offsets request for all of ``partitions``, then each one's
        watermarks."""
        if not partitions:
            return []
        consumer, timeout = self._consumer(group), self._options.socket_timeout
        result = []
        for tp in consumer.committed(partitions, timeout=timeout):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), timeout=timeout, cached=False
            )
            committed = tp.offset if tp.offset >= 0 else None
            start = low if committed is None else committed
            result.append(
                PartitionLag(tp.topic, tp.partition, committed, high, max(high - start, 0))
            )
        return result

    async def aclose(self) -> None:
        await asyncio.to_thread(self._lock.acquire)  # a read under way finishes first
        try:
            consumers, self._consumers = list(self._consumers.values()), {}
        finally:
            self._lock.release()
        for consumer in consumers:
            await asyncio.to_thread(consumer.close)


class _KafkaBroker(Protocol):
    """What a reader needs of a ``KafkaBroker`` (named so, since ``broker.py`` imports this)."""

    @property
    def options(self) -> KafkaOptions: ...

    @property
    def url(self) -> BrokerURL: ...


def open_reader(broker: Broker) -> LagReader | None:
    """A reader for a ``KafkaBroker``'s cluster (same options, its own clients)."""
    kafka = cast("_KafkaBroker", broker)
    return KafkaLagReader(kafka.options, kafka.url)
