"""Broker layer: raw confluent-kafka doing what ``eventwire bench`` measures, and clean-up.

The adapter's producer settings (acks=all, idempotence, linger, compression), one
``produce`` per message whose delivery report is the confirmation, a consumer of a new group
reading from the earliest offset with librdkafka's at-least-once recipe (``store_offsets``
after each message, auto-commit), ``json.loads`` of each body. The topic is created and
deleted through the adapter's connection (the shared broker has auto-create off). Loaded by
the bench command through its module name, so the CLI never imports confluent_kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable
from importlib.metadata import version

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient

from eventwire.brokers.kafka.connection import KafkaConnection
from eventwire.brokers.kafka.options import KafkaOptions
from eventwire.brokers.kafka.topics import retry_group
from eventwire.core.contract import Broker
from eventwire.core.url import BrokerURL

CLIENT = f"confluent-kafka {version('confluent-kafka')}"
PREFETCH = 100


class RawDriver:
    """confluent-kafka: one producer with a polling thread, one consumer of group ``raw``."""

    def __init__(self, url: BrokerURL, topic: str) -> None:
        self._options = KafkaOptions.from_url(url)
        self._conn = KafkaConnection(self._options, url)
        self._topic = f"raw-{topic}"
        self._group = f"raw-{topic}"
        self._stop = threading.Event()

    async def open(self) -> None:
        await self._conn.open()
        await self._conn.ensure_topics([self._topic])
        self._producer = Producer(self._options.producer_config())
        self._poller = threading.Thread(target=self._poll, daemon=True)
        self._poller.start()
        config = self._options.consumer_config(self._group, from_earliest=True)
        config.update({"enable.auto.commit": True, "auto.commit.interval.ms": 1000})
        self._consumer = Consumer(config)
        self._consumer.subscribe([self._topic])

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def publish(self, body: bytes) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def report(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                loop.call_soon_threadsafe(_settle, done, None)
            else:
                loop.call_soon_threadsafe(_settle, done, KafkaException(err))

        self._producer.produce(self._topic, value=body, on_delivery=report)
        await done

    async def start_live(self) -> None:
        """Nothing to prepare: the same consumer reads the latency phase."""

    async def consume(
        self, count: int, each: Callable[[object], None], *, live: bool = False
    ) -> None:
        seen = 0
        while seen < count:
            batch = await asyncio.to_thread(self._fetch)
            for message in batch:
                if message.error():
                    continue
                each(json.loads(message.value() or b"{}"))
                self._consumer.store_offsets(message=message)
                seen += 1

    def _fetch(self) -> list[Message]:
        # poll() returns with the first record; consume(n, timeout) would wait for n or timeout.
        first = self._consumer.poll(0.05)
        return [] if first is None else [first, *self._consumer.consume(PREFETCH - 1, 0)]

    async def aclose(self) -> None:
        self._stop.set()
        try:
            await asyncio.to_thread(self._consumer.close)
            await asyncio.to_thread(self._producer.flush, 10)
            await self._conn.delete_topics([self._topic])
            _delete_groups(self._options, [self._group])
        finally:
            await self._conn.aclose()


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _delete_groups(options: KafkaOptions, groups: list[str]) -> None:
    admin = AdminClient(options.admin_config())
    for future in admin.delete_consumer_groups(groups, request_timeout=10).values():
        with contextlib.suppress(KafkaException):  # already gone, or still settling
            future.result()


async def remove_run(url: BrokerURL, topic: str, group: str, brokers: list[Broker]) -> None:
    """Delete the topics the run's adapters created (the topic, its retry and DLQ topics)
    and the run's consumer groups."""
    options = KafkaOptions.from_url(url)
    created = {t for b in brokers for t in getattr(b, "created_topics", ()) if topic in t}
    conn = KafkaConnection(options, url)
    await conn.open()
    try:
        await conn.delete_topics(sorted(created))
    finally:
        await conn.aclose()
    await asyncio.to_thread(_delete_groups, options, [group, retry_group(group)])
