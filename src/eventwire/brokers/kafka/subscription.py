"""Broker layer: one Kafka subscription (a consumer thread) and its deliveries.

``ack`` tells the consumer thread the offset is finished (it commits up to the lowest
unfinished one). ``nack`` of a group delivery produces a confirmed copy to the topic's retry
topic (attempt + 1, due time, group) and then finishes the original; a broadcast subscriber
has no group to hand the copy to, so it redelivers the same record locally after the delay.
``dead_letter`` produces a confirmed copy to ``<topic>.dlq`` and then finishes the original.
``KafkaSubscription`` is a ``Subscription`` (``brokers/_support/subscription.py``): the broker
base opens it, tracks it and closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Protocol, Self

from eventwire.brokers.kafka import envelope, topics
from eventwire.brokers.kafka.connection import KafkaConnection
from eventwire.brokers.kafka.errors import translate
from eventwire.brokers.kafka.publisher import KafkaPublisher
from eventwire.brokers.kafka.worker import ConsumerWorker, Fetched, InFlight, WorkerSpec
from eventwire.core import headers as h
from eventwire.core.errors import BrokerError, ConfigurationError
from eventwire.core.message import Delivery, Message, dead_letter_topic

log = logging.getLogger("eventwire.kafka")


class Settler(Protocol):
    """What a delivery needs from its subscription (``KafkaSubscription``)."""

    topic: str
    group: str | None

    def ack(self, item: Fetched) -> None: ...

    async def nack(
        self, item: Fetched, message: Message, attempt: int, delay: float | None
    ) -> None: ...

    async def dead_letter(self, item: Fetched, dead: Message) -> None: ...

    async def transaction_point(self, item: Fetched) -> tuple[str, int, object, int | None]: ...


class KafkaDelivery(Delivery):
    """A delivery tied to its partition assignment; settling a stale one is a no-op."""

    __slots__ = ("_item", "_sub")

    def __init__(self, sub: Settler, item: Fetched) -> None:
        super().__init__(
            message=item.decoded.message, topic=sub.topic, attempt=item.attempt, group=sub.group
        )
        self._sub, self._item = sub, item

    async def _ack(self) -> None:
        self._sub.ack(self._item)

    async def _nack(self, delay: float | None) -> None:
        await self._sub.nack(self._item, self.message, self.attempt, delay)

    async def _dead_letter(self, dead: Message) -> None:
        await self._sub.dead_letter(self._item, dead)

    @property
    def item(self) -> Fetched:
        """The fetched record behind this delivery (its partition, epoch and offset)."""
        return self._item

    async def transaction_point(self) -> tuple[str, int, object, int | None]:
        """(topic, partition, group metadata, offset to commit) for a transaction."""
        return await self._sub.transaction_point(self._item)


class KafkaSubscription:
    """Reads ``topic`` (and, for a group, its retry topics) through one consumer thread."""

    def __init__(
        self,
        connection: KafkaConnection,
        publisher: KafkaPublisher,
        topic: str,
        group: str | None,
        prefetch: int,
    ) -> None:
        self.topic, self.group, self.prefetch = topic, group, prefetch
        self._conn = connection
        self._publisher = publisher
        self._inbox: deque[Fetched] = deque()
        self._wake = asyncio.Event()
        self._assigned = asyncio.Event()
        self._failure: BaseException | None = None
        self._main: ConsumerWorker | None = None
        self._retries: ConsumerWorker | None = None
        self._closed = False
        self._timers: set[asyncio.TimerHandle] = set()
        self._acked: list[Fetched] = []  # acks of this loop turn, not yet sent
        self._handed: set[KafkaDelivery] = set()  # for the count ``aclose`` gives back

    async def open(self) -> AsyncIterator[Delivery]:
        """Create the topology, start the consumer, wait until it holds partitions."""
        options = self._conn.options
        await self._conn.ensure_topics(topics.topology(self.topic, self.group))
        loop = asyncio.get_running_loop()
        in_flight = InFlight(self.prefetch)
        # A broadcast subscriber is a member of no group: a throw-away id it never commits to.
        group_id = self.group or f"eventwire-broadcast-{uuid.uuid4().hex}"
        self._main = self._worker(loop, group_id, [self.topic], in_flight, self._event)
        retry = topics.subscription_topics(self.topic, self.group)[1:]
        if retry and self.group is not None:
            # Its own consumer group, so that retry partitions never unbalance how the main
            # topic's partitions are spread over the members.
            self._retries = self._worker(
                loop, topics.retry_group(self.group), retry, in_flight, self._retry_event
            )
        for worker in (self._main, self._retries):
            if worker is not None:
                worker.start()
        # Broadcast: assigned at the high watermark before returning, so nothing published
        # afterwards is missed. A group starts at its committed offset (or the earliest) in
        # any case; waiting for its partitions keeps a rebalance out of the first messages.
        limit = options.join_timeout if self.group is not None else options.socket_timeout * 2
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                await self._assigned.wait()
        if self._failure is not None:
            failure = self._failure
            await self.aclose()
            raise translate(failure, f"subscribing to {self.topic!r}", self._conn.url) from failure
        if self.group is None and not self._assigned.is_set():
            await self.aclose()
            raise BrokerError(
                f"subscribing to {self.topic!r} on kafka at {self._conn.where} failed: no "
                f"partition assigned within {limit:g} s"
            )
        return self

    def _worker(
        self,
        loop: asyncio.AbstractEventLoop,
        group_id: str,
        names: list[str],
        in_flight: InFlight,
        on_event: Callable[[str, BaseException | None], None],
    ) -> ConsumerWorker:
        options = self._conn.options
        config = self._conn.client_config(
            options.consumer_config(group_id, from_earliest=self.group is not None)
        )
        spec = WorkerSpec(
            config=config,
            topics=names,
            group=self.group,
            in_flight=in_flight,
            commit_interval=options.commit_interval,
            timeout=options.socket_timeout,
        )
        return ConsumerWorker(spec, loop, self._receive, on_event)

    def _retry_event(self, kind: str, error: BaseException | None) -> None:
        if kind == "failed":
            self._event(kind, error)

    def _owner(self, item: Fetched) -> ConsumerWorker | None:
        return self._main if item.tp[0] == self.topic else self._retries

    def _receive(self, items: list[Fetched]) -> None:
        self._inbox.extend(items)
        self._wake.set()

    def _event(self, kind: str, error: BaseException | None) -> None:
        if kind == "assigned":
            self._assigned.set()
        elif kind == "failed":
            self._failure = error
            log.error("Kafka consumer of %r stopped: %s", self.topic, error)
            self._assigned.set()
            self._wake.set()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Delivery:
        while True:
            if self._closed or self._main is None or self._failure is not None:
                raise StopAsyncIteration
            inbox, topic, main = self._inbox, self.topic, self._main
            while inbox:
                item = inbox.popleft()
                worker = main if item.tp[0] == topic else self._retries
                if worker is not None and worker.epochs.get(item.tp) == item.epoch:
                    return self._hand_out(KafkaDelivery(self, item))
                # else: revoked since it was fetched
            self._wake.clear()
            await self._wake.wait()

    def _hand_out(self, delivery: KafkaDelivery) -> KafkaDelivery:
        handed = self._handed
        handed.add(delivery)
        if len(handed) > 2 * self.prefetch:  # at most prefetch are unsettled: prune the rest
            self._handed = {d for d in handed if d.settled is None}
        return delivery

    # -- settling (through KafkaDelivery) ----------------------------------------------------

    def ack(self, item: Fetched) -> None:
        """Queue ``item`` as finished; the turn's acks go to the consumer threads together."""
        if self._closed:
            return
        if not self._acked:
            asyncio.get_running_loop().call_soon(self._send_acks)
        self._acked.append(item)

    def _send_acks(self) -> None:
        acked, self._acked = self._acked, []
        if not acked:
            return
        main = [item for item in acked if item.tp[0] == self.topic]
        if main and self._main is not None:
            self._main.settled(main)
        retried = [item for item in acked if item.tp[0] != self.topic]
        if retried and self._retries is not None:
            self._retries.settled(retried)

    def _current(self, item: Fetched) -> bool:
        worker = self._owner(item)
        return worker is not None and not self._closed and worker.is_current(item)

    async def nack(
        self, item: Fetched, message: Message, attempt: int, delay: float | None
    ) -> None:
        if not self._current(item):
            return  # revoked or closed: the partition's next owner reads it again
        if self.group is None or topics.is_terminal(self.topic, self.group):
            self._redeliver_later(item, attempt, delay or 0.0)
            return
        level = topics.retry_level(delay)
        due = time.time() + delay if delay else None
        record = envelope.encode(message, attempt=attempt + 1, due=due, group=self.group)
        # Confirmed copy first, then finish the original: a crash in between duplicates.
        await self._publisher.publish(topics.retry_topic(self.topic, level), [record], [message.id])
        self.ack(item)

    def _redeliver_later(self, item: Fetched, attempt: int, delay: float) -> None:
        again = Fetched(item.tp, item.epoch, item.offset, attempt + 1, item.decoded)

        def due() -> None:
            self._timers.discard(handle)
            self._receive([again])

        handle = asyncio.get_running_loop().call_later(delay, due)
        self._timers.add(handle)

    async def dead_letter(self, item: Fetched, dead: Message) -> None:
        if not self._current(item):
            return
        topic, partition = item.tp
        marked = dead.with_headers(
            **{
                envelope.DLQ_ORIGINAL_PARTITION: str(partition),
                envelope.DLQ_ORIGINAL_OFFSET: str(item.offset),
                h.DLQ_ORIGINAL_TOPIC: topics.source_of(topic),
            }
        )
        record = envelope.encode(marked)
        await self._publisher.publish(dead_letter_topic(self.topic), [record], [dead.id])
        self.ack(item)

    async def transaction_point(self, item: Fetched) -> tuple[str, int, object, int | None]:
        """What ``send_offsets_to_transaction`` needs to commit ``item`` (None: revoked)."""
        topic, partition = item.tp
        worker = self._owner(item)
        if worker is None or self.group is None or not self._current(item):
            if self.group is None:
                raise ConfigurationError(
                    f"a transaction needs a group: {self.topic!r} is read with group=None"
                )
            return topic, partition, None, None
        self._send_acks()  # the commit point counts every delivery finished before this one
        metadata, point = await worker.transaction_point(item)
        if point is not None and point <= item.offset:
            raise ConfigurationError(
                f"offset {item.offset} of {topic}[{partition}] cannot be committed in a "
                f"transaction while offset {point} is unfinished: handle one delivery at a "
                "time per partition (prefetch=1, or ordered_by)"
            )
        return topic, partition, metadata, point

    # -- closing ---------------------------------------------------------------------------

    async def aclose(self) -> int:
        """Commit finished work and leave; unsettled deliveries come again (attempt + 1).
        Returns how many were handed out, unsettled and still this member's (a revoked
        partition's were given back when it was revoked)."""
        if self._closed:
            return 0
        returned = sum(1 for d in self._handed if d.settled is None and self._current(d.item))
        self._handed.clear()
        self._closed = True
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        self._wake.set()
        self._send_acks()  # finished work is committed on close
        left = list(self._inbox)
        self._inbox.clear()
        workers = [w for w in (self._main, self._retries) if w is not None]
        for worker in workers:
            worker.unhanded([item for item in left if self._owner(item) is worker])
        await asyncio.gather(*(worker.stop() for worker in workers))
        return returned
