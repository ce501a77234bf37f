"""Broker layer: raw aio-pika doing what ``eventwire bench`` measures, and the run's clean-up.

The same topology as the adapter (the topic exchange, a durable quorum queue with the
adapter's arguments bound to the topic), persistent messages with an id, publisher
confirms, prefetch 100 and one ack per message. Loaded by the bench command through its
module name, so the CLI never imports aio-pika itself.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import aio_pika

from eventwire.brokers.rabbitmq.delays import is_retry_exchange
from eventwire.brokers.rabbitmq.options import (
    RabbitMQSettings,
    group_queue,
    group_queue_arguments,
)
from eventwire.core.contract import Broker
from eventwire.core.url import BrokerURL

CLIENT = f"aio-pika {version('aio-pika')}"
PREFETCH = 100
_JSON = "application/json"


def _connect_url(url: BrokerURL) -> str:
    # aio-pika reads its own query options; the adapter's (exchange=...) are not for it.
    return url.secret().partition("?")[0]


class RawDriver:
    """aio-pika on one confirm channel and one consumer channel."""

    def __init__(self, url: BrokerURL, topic: str) -> None:
        self._url = url
        self._topic = topic
        self._settings = RabbitMQSettings.from_url(url)
        self._queue_name = "raw-" + group_queue(self._settings.exchange, topic, "raw")

    async def open(self) -> None:
        self._conn = await aio_pika.connect(_connect_url(self._url))
        channel = await self._conn.channel(publisher_confirms=True)
        self._exchange = await channel.declare_exchange(
            self._settings.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        consuming = await self._conn.channel()
        await consuming.set_qos(prefetch_count=PREFETCH)
        args: Any = group_queue_arguments(self._settings, self._topic, "raw")
        self._queue = await consuming.declare_queue(self._queue_name, durable=True, arguments=args)
        await self._queue.bind(self._exchange, self._topic)

    async def publish(self, body: bytes) -> None:
        message = aio_pika.Message(
            body,
            message_id=uuid.uuid4().hex,
            content_type=_JSON,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await self._exchange.publish(message, self._topic)

    async def start_live(self) -> None:
        """Nothing to prepare: the same consumer reads the latency phase."""

    async def consume(
        self, count: int, each: Callable[[object], None], *, live: bool = False
    ) -> None:
        seen = 0
        async with self._queue.iterator() as messages:
            async for message in messages:
                each(json.loads(message.body))
                await message.ack()
                seen += 1
                if seen == count:
                    return

    async def aclose(self) -> None:
        try:
            await self._queue.delete(if_unused=False, if_empty=False)
        finally:
            await self._conn.close()


async def remove_run(url: BrokerURL, topic: str, group: str, brokers: list[Broker]) -> None:
    """Delete the queues the run's adapters declared for ``topic`` (group and DLQ queues);
    the shared exchange and its delay levels stay: other services use them."""
    exchange = RabbitMQSettings.from_url(url).exchange
    queues: set[str] = set()
    for broker in brokers:
        queues.update(getattr(broker, "declared_queues", ()))
    mine = sorted(q for q in queues if not is_retry_exchange(exchange, q) and topic in q)
    if not mine:
        return
    conn = await aio_pika.connect(_connect_url(url))
    try:
        channel = await (await conn.channel()).get_underlay_channel()
        for queue in mine:
            await channel.queue_delete(queue)
    finally:
        await conn.close()
