"""Broker layer: ``KafkaBroker``, the adapter behind ``kafka://`` and ``kafka+ssl://`` URLs."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from eventwire.brokers._support.lifecycle import BrokerBase
from eventwire.brokers.kafka import envelope
from eventwire.brokers.kafka.connection import KafkaConnection
from eventwire.brokers.kafka.lag import KafkaLagReader, PartitionLag
from eventwire.brokers.kafka.options import KafkaOptions
from eventwire.brokers.kafka.publisher import KafkaPublisher
from eventwire.brokers.kafka.subscription import KafkaSubscription
from eventwire.brokers.kafka.transactions import KafkaTransactions, Transaction
from eventwire.core.capabilities import BrokerProfile
from eventwire.core.contract import Health
from eventwire.core.message import DEAD_LETTER_GROUP, Delivery, Message, dead_letter_topic
from eventwire.core.url import BrokerURL


class KafkaBroker(BrokerBase):
    """Publisher and subscriber over one idempotent producer and a consumer per subscription."""

    def __init__(self, url: BrokerURL, profile: BrokerProfile) -> None:
        super().__init__(url, profile)
        self._options = KafkaOptions.from_url(url)
        self._conn = KafkaConnection(self._options, url)
        self._publisher = KafkaPublisher(self._conn)
        self._transactions = KafkaTransactions(self._conn)
        self._lag: KafkaLagReader | None = None  # made by the first ``lag`` call

    @property
    def options(self) -> KafkaOptions:
        return self._options

    @property
    def created_topics(self) -> list[str]:
        """Topics this object created (tests delete them afterwards)."""
        return list(self._conn.created_topics)

    async def delete_topics(self, names: list[str]) -> None:
        """Delete topics (tests and tooling); missing ones are fine."""
        await self.connect()
        await self._conn.delete_topics(names)

    async def lag(self, topic: str, group: str) -> list[PartitionLag]:
        """Per partition of ``topic``: ``group``'s committed offset, the high watermark, lag."""
        await self.connect()
        if self._lag is None:
            self._lag = KafkaLagReader(self._options, self.url)
        return await self._lag.partitions(topic, group)

    def transaction(self, delivery: Delivery) -> AbstractAsyncContextManager[Transaction]:
        """Consume-transform-produce in one Kafka transaction: ``tx.publish`` outputs and
        ``delivery``'s offset commit together or not at all (``transactions.py``)."""
        return self._transactions.transaction(delivery)

    async def browse_dead_letters(self, topic: str, limit: int) -> list[Message] | None:
        """Dead letters of ``topic`` the ``eventwire-dlq`` group has not committed, read
        without joining the group or creating anything; None if ``<topic>.dlq`` is missing."""
        await self.connect()
        return await self._conn.browse(dead_letter_topic(topic), DEAD_LETTER_GROUP, limit)

    async def _connect(self) -> None:
        await self._conn.open()

    async def _publish(self, topic: str, messages: tuple[Message, ...]) -> None:
        records = [envelope.encode(m) for m in messages]
        await self._publisher.publish(topic, records, [m.id for m in messages])

    def _subscribe(self, topic: str, group: str | None, prefetch: int) -> KafkaSubscription:
        return KafkaSubscription(self._conn, self._publisher, topic, group, prefetch)

    async def _flush_publishes(self) -> None:
        await self._publisher.drain()

    async def _close_connection(self) -> None:
        await self._transactions.aclose()
        if self._lag is not None:
            await self._lag.aclose()
        await self._conn.aclose()

    async def _health(self) -> Health:
        try:
            await self._conn.check_reachable(self._options.socket_timeout)
        except Exception as exc:  # noqa: BLE001 - health reports, never raises
            return Health(ok=False, detail=str(exc))
        return Health(ok=True, detail="connected")
