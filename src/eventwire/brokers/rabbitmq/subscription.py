"""Broker layer: one RabbitMQ subscription (consumer on its own channel) and its deliveries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Final, Self, cast

import aio_pika
import aiormq.abc
from pamqp.commands import Basic

from eventwire.brokers.rabbitmq import envelope
from eventwire.brokers.rabbitmq import settings as names
from eventwire.brokers.rabbitmq.connection import RabbitMQConnection
from eventwire.brokers.rabbitmq.errors import TRANSIENT, translate
from eventwire.brokers.rabbitmq.publisher import ConfirmedPublisher
from eventwire.core.message import DEAD_LETTER_GROUP, Delivery, Message, dead_letter_topic

log = logging.getLogger("eventwire.rabbitmq")
_STOP: Final = None


class RabbitMQDelivery(Delivery):
    """A delivery tied to the channel it came on; settling on a dead channel is a no-op."""

    __slots__ = ("_channel", "_sub", "_tag")

    def __init__(
        self,
        sub: RabbitMQSubscription,
        channel: aiormq.abc.AbstractChannel,
        tag: int,
        message: Message,
        attempt: int,
    ) -> None:
        super().__init__(message=message, topic=sub.topic, attempt=attempt, group=sub.group)
        self._sub, self._channel, self._tag = sub, channel, tag

    async def _ack(self) -> None:
        await self._sub.settle(self._channel, self._tag, requeue=None)

    async def _nack(self, delay: float | None) -> None:
        await self._sub.nack(self, self._channel, self._tag, delay)

    async def _dead_letter(self, dead: Message) -> None:
        await self._sub.dead_letter(self._channel, self._tag, dead)


class RabbitMQSubscription:
    """Consumes one queue: the group's quorum queue, or a server-named one for broadcast."""

    def __init__(
        self,
        connection: RabbitMQConnection,
        publisher: ConfirmedPublisher,
        topic: str,
        group: str | None,
        prefetch: int,
    ) -> None:
        self.topic, self.group, self.prefetch = topic, group, prefetch
        self._conn = connection
        self._publisher = publisher
        self._settings = connection.settings
        exchange = self._settings.exchange
        self._queue = names.group_queue(exchange, topic, group) if group is not None else ""
        self._inbox: asyncio.Queue[aiormq.abc.DeliveredMessage | None] = asyncio.Queue()
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._retry_queues: set[str] = set()
        self._consumer_tag = ""
        self._opening = asyncio.Lock()

    async def __aenter__(self) -> Self:
        try:
            await self._open(await self._conn.wait_ready(self._settings.connect_timeout))
        except Exception as exc:
            await self._close_channel()
            raise translate(exc, f"subscribing to {self.topic!r}", self._conn.where) from exc
        self._conn.add_restorer(self, self._open)
        return self

    async def _open(self, conn: aio_pika.abc.AbstractConnection) -> None:
        """Declare this subscription's queues, then consume; run again after every reconnect."""
        async with self._opening:
            if self._channel is not None and not self._channel.is_closed:
                return  # restored meanwhile by the other path (supervisor or _reopen)
            await self._open_channel(conn)

    async def _open_channel(self, conn: aio_pika.abc.AbstractConnection) -> None:
        channel = await conn.channel(publisher_confirms=False)
        raw = await channel.get_underlay_channel()
        exchange = self._settings.exchange
        topology = self._conn.topology
        if self.group is not None:
            args = names.group_queue_arguments(self._settings, self.topic, self.group)
            await topology.declare_queue(raw, self._queue, args, ((exchange, self.topic),))
        else:
            ok = await raw.queue_declare(queue="", exclusive=True, auto_delete=True)
            self._queue = ok.queue or ""
            await raw.queue_bind(queue=self._queue, exchange=exchange, routing_key=self.topic)
        if not names.is_terminal(self.topic, self.group):
            # The DLQ exists before the first dead letter can be made, so none is dropped.
            dlq_topic = dead_letter_topic(self.topic)
            dlq = names.group_queue(exchange, dlq_topic, DEAD_LETTER_GROUP)
            dlq_args = names.group_queue_arguments(self._settings, dlq_topic, DEAD_LETTER_GROUP)
            await topology.declare_queue(raw, dlq, dlq_args, ((exchange, dlq_topic),))
        await raw.basic_qos(prefetch_count=self.prefetch)
        self._drop_stale()
        self._channel = channel
        channel.close_callbacks.add(self._on_channel_close)
        consume = await raw.basic_consume(self._queue, self._on_message, no_ack=False)
        self._consumer_tag = consume.consumer_tag or ""

    def _on_channel_close(self, sender: object, exc: BaseException | None = None) -> None:
        # Only this channel died (a channel error, not the connection): consume again. When
        # the whole connection is down the supervisor restores every subscription instead.
        if self._closed or sender is not self._channel or not self._conn.ready:
            return
        log.warning("RabbitMQ channel of %r closed (%r); consuming again", self.topic, exc)
        task = asyncio.create_task(self._reopen())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reopen(self) -> None:
        attempt = 0
        while not self._closed:
            try:
                await self._open(await self._conn.wait_ready(self._settings.connect_timeout))
            except Exception:  # noqa: BLE001 - any failure: back off and try again
                await asyncio.sleep(self._conn.backoff(attempt))
                attempt += 1
            else:
                return

    async def _on_message(self, message: aiormq.abc.DeliveredMessage) -> None:
        self._inbox.put_nowait(message)

    def _drop_stale(self) -> None:
        # Buffered deliveries of a dead channel come again from the broker; hand none of them out.
        kept = [m for m in self._drain() if m is not None and not m.channel.is_closed]
        for message in kept:
            self._inbox.put_nowait(message)

    def _drain(self) -> list[aiormq.abc.DeliveredMessage | None]:
        items = []
        while not self._inbox.empty():
            items.append(self._inbox.get_nowait())
        return items

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Delivery:
        while True:
            if self._closed:
                raise StopAsyncIteration
            raw = await self._inbox.get()
            if raw is _STOP:
                raise StopAsyncIteration
            if raw.channel.is_closed:
                continue  # its channel died: the broker redelivers it on the new one
            properties = raw.header.properties
            redelivered = bool(getattr(raw.delivery, "redelivered", False))
            try:
                message, attempt = envelope.decode(raw.body, properties, redelivered=redelivered)
            except ValueError:
                message, attempt = envelope.decode(raw.body, _strip(properties), redelivered=False)
            tag = cast("Basic.Deliver", raw.delivery).delivery_tag
            return RabbitMQDelivery(self, raw.channel, tag or 0, message, attempt)

    async def settle(
        self, channel: aiormq.abc.AbstractChannel, tag: int, *, requeue: bool | None
    ) -> None:
        """ack (requeue None) or nack; a no-op once the channel is gone (broker redelivers)."""
        if channel.is_closed:
            return
        try:
            if requeue is None:
                await channel.basic_ack(tag)
            else:
                await channel.basic_nack(tag, requeue=requeue)
        except TRANSIENT:
            log.debug("settling on a lost channel of %r; the broker redelivers", self.topic)

    async def nack(
        self,
        delivery: Delivery,
        channel: aiormq.abc.AbstractChannel,
        tag: int,
        delay: float | None,
    ) -> None:
        if channel.is_closed:
            return
        if self.group is None:
            # Broadcast queues are classic and server-named: copy back with attempt + 1 later.
            task = asyncio.create_task(self._requeue_later(delivery, channel, tag, delay or 0.0))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        if not delay or delay <= 0:
            await self.settle(channel, tag, requeue=True)  # quorum: x-delivery-count + 1
            return
        bucket = names.retry_bucket(delay)
        target = names.retry_queue(self._queue, bucket)
        if target not in self._retry_queues:
            args = names.retry_queue_arguments(self._queue, bucket)
            await self._conn.topology.declare_queue(channel, target, args)
            self._retry_queues.add(target)
        outgoing = [
            (delivery.message.body, envelope.encode(delivery.message, attempt=delivery.attempt + 1))
        ]
        # Confirmed copy first, then ack: a crash in between duplicates, never loses.
        await self._publisher.publish("", target, outgoing)
        await self.settle(channel, tag, requeue=None)

    async def _requeue_later(
        self, delivery: Delivery, channel: aiormq.abc.AbstractChannel, tag: int, delay: float
    ) -> None:
        await asyncio.sleep(delay)
        outgoing = [
            (delivery.message.body, envelope.encode(delivery.message, attempt=delivery.attempt + 1))
        ]
        await self._publisher.publish("", self._queue, outgoing)
        await self.settle(channel, tag, requeue=None)

    async def dead_letter(
        self, channel: aiormq.abc.AbstractChannel, tag: int, dead: Message
    ) -> None:
        """Confirmed publish to the DLQ topic, then ack (a crash in between duplicates)."""
        if channel.is_closed:
            return
        outgoing = [(dead.body, envelope.encode(dead))]
        await self._publisher.publish(
            self._settings.exchange, dead_letter_topic(self.topic), outgoing
        )
        await self.settle(channel, tag, requeue=None)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop consuming; unsettled deliveries go back to the queue as the channel closes."""
        if self._closed:
            return
        self._closed = True
        self._conn.remove_restorer(self)
        for task in list(self._tasks):
            task.cancel()
        self._inbox.put_nowait(_STOP)
        await self._close_channel()

    async def _close_channel(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            # basic.cancel is a round trip that lets the quorum queue apply the acks sent
            # before it; closing the channel right after the last acks could lose them
            # (seen on 3.10: acked messages redelivered after the channel closed).
            with contextlib.suppress(Exception):
                raw = await self._channel.get_underlay_channel()
                await raw.basic_cancel(self._consumer_tag)
            with contextlib.suppress(Exception):
                await self._channel.close()


def _strip(properties: Basic.Properties) -> Basic.Properties:
    # A foreign publisher's malformed attempt/timestamp header: deliver with the bare basics.
    return Basic.Properties(
        content_type=properties.content_type,
        message_id=properties.message_id,
        correlation_id=properties.correlation_id,
        headers={k: v for k, v in (properties.headers or {}).items() if not k.startswith("x-")},
    )
