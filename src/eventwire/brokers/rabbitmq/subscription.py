"""Broker layer: one RabbitMQ subscription (consumer on its own channel) and its deliveries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final, Self

import aio_pika
import aiormq.abc

from eventwire.brokers.rabbitmq import delays, envelope, frames
from eventwire.brokers.rabbitmq import options as names
from eventwire.brokers.rabbitmq.connection import RabbitMQConnection
from eventwire.brokers.rabbitmq.delivery import RabbitMQDelivery
from eventwire.brokers.rabbitmq.errors import TRANSIENT, describe, translate
from eventwire.brokers.rabbitmq.publisher import ConfirmedPublisher, Outgoing, UnroutableError
from eventwire.core.message import DEAD_LETTER_GROUP, Delivery, Message, dead_letter_topic

log = logging.getLogger("eventwire.rabbitmq")
_STOP: Final = None


class RabbitMQSubscription:
    """The ``Subscription`` of one queue: the group's quorum queue, or a server-named one for
    broadcast."""

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
        # Deliveries handed out, pruned of settled ones: what aclose() counts as given back.
        self._handed: set[Delivery] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._delay_levels = -1  # delay levels declared for this queue so far
        self._terminal = names.is_terminal(topic, group)
        self.unreadable = 0  # deliveries dead-lettered as unreadable envelopes
        self._consumer_tag = ""
        self._opening = asyncio.Lock()
        self._pw = self._settings.password

    async def open(self) -> Self:
        try:
            await self._open(await self._conn.wait_ready(self._settings.connect_timeout))
        except Exception as exc:
            await self._close_channel()
            raise translate(
                exc, f"subscribing to {self.topic!r}", self._conn.where, self._settings.password
            ) from exc
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
        # Declared afresh (force) on every (re)open: the queue may have been deleted meanwhile.
        if self.group is not None:
            await self._declare_group_queue(raw, force=True)
        else:
            # A dead-letter exchange like the group queues': unreadable deliveries are
            # rejected into the DLQ by the broker itself.
            ok = await raw.queue_declare(
                queue="",
                exclusive=True,
                auto_delete=True,
                arguments={
                    "x-dead-letter-exchange": exchange,
                    "x-dead-letter-routing-key": dead_letter_topic(self.topic),
                },
            )
            self._queue = ok.queue or ""
            await raw.queue_bind(queue=self._queue, exchange=exchange, routing_key=self.topic)
        if not self._terminal:
            # The DLQ exists before the first dead letter can be made, so none is dropped.
            await self._declare_dlq(raw)
        await raw.basic_qos(prefetch_count=self.prefetch)
        self._drop_stale()
        self._delay_levels = -1  # declared again on first use (they may be gone too)
        self._channel = channel
        channel.close_callbacks.add(self._on_channel_close)
        raw.on_consumer_cancel_callbacks.add(self._on_consumer_cancel)
        consume = await raw.basic_consume(self._queue, self._on_message, no_ack=False)
        self._consumer_tag = consume.consumer_tag or ""

    async def _declare_group_queue(
        self, channel: aiormq.abc.AbstractChannel, *, force: bool
    ) -> None:
        """The group's queue, bound to the topic and to the delay levels' deliver exchange
        (bound at every open, so a retry in the levels finds its way back to a queue that
        was deleted and declared again meanwhile)."""
        exchange = self._settings.exchange
        deliver = delays.deliver_exchange(exchange)
        topology = self._conn.topology
        await topology.declare_exchange(channel, deliver, force=force)
        await topology.declare_queue(
            channel,
            self._queue,
            names.group_queue_arguments(self._settings, self.topic, self.group or ""),
            ((exchange, self.topic), (deliver, "#." + delays.target_token(self._queue))),
            force=force,
        )

    async def _declare_dlq(self, channel: aiormq.abc.AbstractChannel) -> None:
        exchange = self._settings.exchange
        dlq_topic = dead_letter_topic(self.topic)
        dlq = names.group_queue(exchange, dlq_topic, DEAD_LETTER_GROUP)
        dlq_args = names.group_queue_arguments(self._settings, dlq_topic, DEAD_LETTER_GROUP)
        await self._conn.topology.declare_queue(
            channel, dlq, dlq_args, ((exchange, dlq_topic),), force=True
        )

    def _on_consumer_cancel(self, _frame: object) -> None:
        # The broker cancelled the consumer but kept the channel open (its queue was deleted,
        # or a quorum queue lost its members): nothing more would arrive. Drop the channel (its
        # unsettled deliveries come again) and declare + consume again with backoff.
        channel = self._channel
        if self._closed or channel is None:
            return
        log.warning("RabbitMQ cancelled the consumer of %r; subscribing again", self.topic)
        self._channel = None  # so _on_channel_close does not start a second reopen
        task = asyncio.create_task(self._resubscribe(channel))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resubscribe(self, channel: aio_pika.abc.AbstractChannel) -> None:
        with contextlib.suppress(Exception):
            await channel.close()
        await self._reopen()

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
            except Exception as exc:  # noqa: BLE001 - any failure: back off and try again
                log.debug("reopening %r failed: %s", self.topic, describe(exc, self._pw))
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
            delivery = await self._read(raw)
            if delivery is not None:
                self._hand_out(delivery)
                return delivery

    def _hand_out(self, delivery: Delivery) -> None:
        handed = self._handed
        handed.add(delivery)
        if len(handed) > 2 * self.prefetch:  # at most prefetch are unsettled: prune the rest
            self._handed = {d for d in handed if d.settled is None}

    async def _read(self, raw: aiormq.abc.DeliveredMessage) -> Delivery | None:
        """The delivery, or None when its envelope is unreadable and the broker moved it.

        The one decoding boundary of this adapter: nothing a producer sends may escape it.
        An unreadable envelope (what ``frames`` could not decode) cannot be copied faithfully,
        so it is rejected into the dead-letter exchange of its queue: the broker keeps every
        byte, and the DLQ reader names the reason from the same bytes.
        """
        problems = frames.problems_of(raw.header)
        if not problems or self._terminal:
            try:
                return RabbitMQDelivery.of(
                    self, raw, via_retry=self._via_retry(raw), dead_letters=self._terminal
                )
            except Exception as exc:  # noqa: BLE001 - a decoder bug must not kill the consumer
                problems = (f"{type(exc).__name__}: {exc}",)
                if self._terminal:
                    return RabbitMQDelivery.raw(self, raw, problems)
        tag = getattr(raw.delivery, "delivery_tag", None) or 0
        log.warning(
            "RabbitMQ message on %r has an %s (%s); dead-lettering it unchanged",
            self.topic,
            envelope.UNREADABLE,
            "; ".join(problems),
        )
        self.unreadable += 1
        await self.settle(raw.channel, tag, requeue=False)
        return None

    def _via_retry(self, raw: aiormq.abc.DeliveredMessage) -> bool:
        """Whether the broker delivered ``raw`` from this adapter's own retry path."""
        via = getattr(raw.delivery, "exchange", None) or ""
        if self.group is None:  # broadcast retries are sent straight to the queue
            return via == "" and getattr(raw.delivery, "routing_key", None) == self._queue
        return delays.is_retry_exchange(self._settings.exchange, via)

    async def settle(
        self, channel: aiormq.abc.AbstractChannel, tag: int, *, requeue: bool | None
    ) -> None:
        """ack (requeue None) or nack (requeue False: to the queue's dead-letter exchange);
        a no-op once the channel is gone (the broker redelivers)."""
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
        if not delays.steps(delay or 0.0):
            await self.settle(channel, tag, requeue=True)  # quorum: x-delivery-count + 1
            return
        steps = delays.steps(delay or 0.0)
        exchange = self._settings.exchange
        top = delays.levels_of(steps)[0]

        async def declare(force: bool) -> None:
            topology = self._conn.topology
            await topology.declare_delay_levels(channel, exchange, top, force=force)
            if force:  # the copy came back: the group queue or its binding may be gone too
                await self._declare_group_queue(channel, force=True)
            self._delay_levels = max(self._delay_levels, top)

        if top > self._delay_levels:
            await declare(False)
        outgoing = [
            (delivery.message.body, envelope.encode(delivery.message, attempt=delivery.attempt + 1))
        ]
        # Confirmed copy first, then ack: a crash in between duplicates, never loses.
        await self._copy(
            delays.level_exchange(exchange, top),
            delays.routing_key(steps, self._queue),
            outgoing,
            declare,
        )
        await self.settle(channel, tag, requeue=None)

    async def _copy(
        self,
        exchange: str,
        key: str,
        outgoing: list[Outgoing],
        declare: Callable[[bool], Awaitable[None]],
    ) -> None:
        """Publish our own copy so that it reaches a queue, declaring the queue again if gone.

        Without ``mandatory`` a copy to a deleted retry queue or DLQ is confirmed and dropped,
        and acking the original afterwards would lose the message.
        """
        try:
            await self._publisher.publish(exchange, key, outgoing, mandatory=True)
        except UnroutableError:
            log.warning("RabbitMQ queue for %r is gone; declaring it again", key)
            await declare(True)
            await self._publisher.publish(exchange, key, outgoing, mandatory=True)

    async def _requeue_later(
        self, delivery: Delivery, channel: aiormq.abc.AbstractChannel, tag: int, delay: float
    ) -> None:
        await asyncio.sleep(delay)
        outgoing = [
            (delivery.message.body, envelope.encode(delivery.message, attempt=delivery.attempt + 1))
        ]
        try:
            await self._publisher.publish("", self._queue, outgoing, mandatory=True)
        except UnroutableError:
            return  # the broadcast queue is gone with its channel: nothing left to redeliver
        await self.settle(channel, tag, requeue=None)

    async def dead_letter(
        self, channel: aiormq.abc.AbstractChannel, tag: int, dead: Message
    ) -> None:
        """Confirmed publish to the DLQ topic, then ack (a crash in between duplicates)."""
        if channel.is_closed:
            return
        outgoing = [(dead.body, envelope.encode(dead))]

        async def declare(_force: bool) -> None:
            await self._declare_dlq(channel)

        await self._copy(self._settings.exchange, dead_letter_topic(self.topic), outgoing, declare)
        await self.settle(channel, tag, requeue=None)

    async def aclose(self) -> int:
        """Stop consuming; unsettled deliveries go back to the queue as the channel closes
        (returns how many were handed out and not settled)."""
        if self._closed:
            return 0
        self._closed = True
        returned = sum(1 for d in self._handed if d.settled is None)
        self._handed.clear()
        self._conn.remove_restorer(self)
        for task in list(self._tasks):
            task.cancel()
        self._inbox.put_nowait(_STOP)
        await self._close_channel()
        return returned

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
