"""Broker layer: consume-transform-produce in one Kafka transaction (exactly-once inside Kafka).

``async with broker.transaction(delivery) as tx: await tx.publish(topic, *messages)`` produces
the messages through a transactional producer and, in the same transaction, commits the
delivery's offset for its group (``send_offsets_to_transaction`` with the consumer's group
metadata, so a member that lost the partition is fenced). On success the outputs and the
offset become visible together and the delivery counts as acked; on an exception the
transaction is aborted (``read_committed`` consumers never see its records) and the delivery
stays unsettled for the caller to nack or leave.

What this guarantees: a pipeline killed at any point produces each output once, as seen by
``read_committed`` consumers (eventwire's consumers read that way). What it does not: side
effects outside Kafka (a database write, an HTTP call) are still at-least-once, and a
``read_uncommitted`` reader sees aborted records. The delivery's partition must not have an
unfinished lower offset (one delivery at a time per partition: ``prefetch=1`` or ordered
handling), else its offset cannot be committed yet and ``ConfigurationError`` says so.

One transactional producer per broker object; transactions run one at a time. Give the
process a stable ``transactional_id`` (URL option) so that a restarted instance fences its
killed predecessor and aborts its open transaction at once; without one, a random id is used
and a killed instance's open transaction holds back ``read_committed`` readers of its output
topics until ``transaction_timeout`` runs out.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol, runtime_checkable

from confluent_kafka import KafkaException, Producer, TopicPartition

from eventwire.brokers._support.lifecycle import validate_topic
from eventwire.brokers.kafka import envelope
from eventwire.brokers.kafka.connection import KafkaConnection
from eventwire.brokers.kafka.errors import error_of, translate
from eventwire.brokers.kafka.profile import MAX_BODY_BYTES
from eventwire.core.errors import ConfigurationError, PublishError
from eventwire.core.message import Delivery, Message


@runtime_checkable
class TransactionalDelivery(Protocol):
    """What a transaction needs from a delivery (``KafkaDelivery``)."""

    async def transaction_point(self) -> tuple[str, int, object, int | None]: ...


class Transaction:
    """The outputs of one consume-transform-produce step; ``publish`` queues them."""

    def __init__(self, connection: KafkaConnection, producer: Producer) -> None:
        self._conn, self._producer = connection, producer
        self.published = 0

    async def publish(self, topic: str, *messages: Message) -> None:
        """Produce ``messages`` inside the transaction (visible only once it commits)."""
        validate_topic(topic)
        for message in messages:
            message.validate(max_body_bytes=MAX_BODY_BYTES)
        await self._conn.ensure_topics([topic])
        for message in messages:
            record = envelope.encode(message)
            try:
                self._producer.produce(
                    topic,
                    value=record.value,
                    key=record.key,
                    headers=record.headers,
                    timestamp=record.timestamp_ms,
                )
            except (BufferError, KafkaException) as exc:
                raise PublishError(
                    f"publishing to {topic!r} in a transaction on kafka at {self._conn.where} "
                    f"failed: {exc}; the transaction is aborted"
                ) from exc
            self.published += 1

    async def flush(self) -> None:
        """Wait until the broker holds what was published so far (still uncommitted)."""
        left = await asyncio.to_thread(self._producer.flush, self._conn.options.publish_timeout)
        if left:
            raise PublishError(
                f"{left} record(s) of a transaction not acknowledged by kafka at "
                f"{self._conn.where} within {self._conn.options.publish_timeout:g} s"
            )


class KafkaTransactions:
    """The broker object's transactional producer, created on first use."""

    def __init__(self, connection: KafkaConnection) -> None:
        self._conn = connection
        self._producer: Producer | None = None
        self._lock = asyncio.Lock()

    async def _ready(self) -> Producer:
        if self._producer is None:
            options = self._conn.options
            tid = options.transactional_id or f"eventwire-{uuid.uuid4().hex}"
            config = self._conn.client_config(options.producer_config(transactional_id=tid))
            config["transaction.timeout.ms"] = int(options.transaction_timeout * 1000)
            producer = Producer(config)
            try:
                await asyncio.to_thread(producer.init_transactions, options.socket_timeout * 3)
            except KafkaException as exc:
                raise translate(exc, "starting transactions", self._conn.url) from exc
            self._producer = producer
        return self._producer

    @asynccontextmanager
    async def transaction(self, delivery: Delivery) -> AsyncIterator[Transaction]:
        """One transaction holding the outputs and ``delivery``'s offset (module docstring)."""
        if not isinstance(delivery, TransactionalDelivery):
            raise ConfigurationError("a Kafka transaction takes a delivery of this Kafka broker")
        async with self._lock:
            producer = await self._ready()
            timeout = self._conn.options.socket_timeout * 3
            await asyncio.to_thread(producer.begin_transaction)
            tx = Transaction(self._conn, producer)
            try:
                yield tx
                topic, partition, metadata, point = await delivery.transaction_point()
                if point is None:
                    raise PublishError(
                        f"the partition of {delivery.message.id!r} was revoked: its next owner "
                        "reads it again; the transaction is aborted"
                    )
                offsets = [TopicPartition(topic, partition, point)]
                await asyncio.to_thread(
                    producer.send_offsets_to_transaction, offsets, metadata, timeout
                )
                await asyncio.to_thread(producer.commit_transaction, timeout)
            except BaseException as exc:
                await self._abort(producer, exc)
                if isinstance(exc, KafkaException):
                    raise translate(
                        exc, "committing a transaction", self._conn.url,
                        publishing=True,
                    ) from exc  # fmt: skip
                raise
        await delivery.ack()  # the offset is committed already; this settles it locally

    async def _abort(self, producer: Producer, cause: BaseException) -> None:
        error = error_of(cause) if isinstance(cause, KafkaException) else None
        if error is not None and error.fatal():
            self._producer = None  # fenced or broken: a new producer next time
            return
        try:
            await asyncio.to_thread(producer.abort_transaction, self._conn.options.socket_timeout)
        except KafkaException:
            self._producer = None

    async def aclose(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await asyncio.to_thread(producer.flush, 5)
