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

from confluent_kafka import Consumer, KafkaException, TopicPartition

from eventwire.brokers.kafka.broker import KafkaBroker
from eventwire.brokers.kafka.errors import translate
from eventwire.brokers.kafka.options import KafkaOptions
from eventwire.brokers.kafka.topics import RETRY_INFIX, retry_group, retry_topics
from eventwire.core.contract import Broker
from eventwire.core.lag import Backlog, LagReader


class KafkaLagReader:
    """Per-group metadata consumers, created on the first read of each group."""

    def __init__(self, options: KafkaOptions, where: str) -> None:
        self._options = options
        self._where = where
        self._consumers: dict[str, Consumer] = {}
        self._lock = threading.Lock()  # reads run in worker threads

    async def read(self, topic: str, group: str) -> Backlog | None:
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
            lags = self._topic_lag(topic, group, "")
            if lags is None:
                return None  # no such topic yet
            for retry in retry_topics(topic):
                label = "retry." + retry.removeprefix(topic + RETRY_INFIX) + ":"
                lags.update(self._topic_lag(retry, retry_group(group), label) or {})
            return lags

    def _topic_lag(self, topic: str, group: str, label: str) -> dict[str, int] | None:
        timeout = self._options.socket_timeout
        consumer = self._consumers.get(group)
        if consumer is None:
            config = self._options.consumer_config(group, from_earliest=True)
            consumer = self._consumers[group] = Consumer(config)
        described = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if described is None or described.error is not None:
            return None
        wanted = [TopicPartition(topic, p) for p in sorted(described.partitions)]
        lags: dict[str, int] = {}
        for tp in consumer.committed(wanted, timeout=timeout):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, tp.partition), timeout=timeout, cached=False
            )
            start = tp.offset if tp.offset >= 0 else low
            lags[f"{label}{tp.partition}"] = max(high - start, 0)
        return lags

    async def aclose(self) -> None:
        with self._lock:
            consumers, self._consumers = list(self._consumers.values()), {}
        for consumer in consumers:
            await asyncio.to_thread(consumer.close)


def open_reader(broker: Broker) -> LagReader | None:
    """A reader for a ``KafkaBroker``'s cluster (same options, its own clients)."""
    assert isinstance(broker, KafkaBroker)
    return KafkaLagReader(broker.options, str(broker.url))
