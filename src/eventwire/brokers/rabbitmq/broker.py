"""Broker layer: ``RabbitMQBroker``, the adapter behind ``amqp://`` and ``amqps://`` URLs.

Topology: one durable topic exchange (``exchange=`` option, default "eventwire") with routing
key = topic; a durable quorum queue per (topic, group) with x-delivery-limit and at-least-once
dead-lettering to ``dead_letter_topic(topic)``, whose queue (group ``DEAD_LETTER_GROUP``) is
declared whenever the source is subscribed; shared binary-decomposed TTL delay levels for
``nack(delay)`` (``delays``); an exclusive auto-delete server-named queue per broadcast
subscriber, with the same dead-letter exchange.

Decoding boundary: whatever a producer sends becomes a ``Message`` (``envelope.decode`` is
total) or, when its properties cannot be read at all (``frames``), a broker-side dead letter
with every byte kept; the connection never closes over a message.

Known windows, all on the side of duplicates, never loss: ``dead_letter`` and ``nack(delay)``
publish a confirmed copy and then ack the original, so a crash between the two leaves both;
a publish whose confirm was lost in a connection cut is sent again after the reconnect.
Broadcast queues die with the connection: broadcast subscribers miss what is published while
they are disconnected (groups do not). Settling a delivery whose channel is gone is a no-op:
the broker redelivers it (attempt + 1). Leaving a subscription cancels the consumer before
closing its channel, so acks sent just before are applied (quorum queues on 3.10 could
otherwise redeliver them).

Unroutable messages: an application publish to a topic no queue is bound to (no group has
subscribed yet, no broadcast subscriber listens) is published ``mandatory``: the broker returns
it and ``publish`` raises ``UnroutableError`` (a ``PublishError``) rather than letting the
broker confirm and drop it; ``?unroutable=drop`` restores plain pub/sub. The adapter's
own copies (retry, dead letter) are published ``mandatory``: if their queue was deleted behind
our back they come back, the queue is declared again and the copy resent, so the original is
never acked against a dropped copy. A consumer cancelled by the broker (its queue deleted)
declares its queues again and consumes again, with backoff.
"""

from __future__ import annotations

from eventwire.brokers._support.lifecycle import BrokerBase
from eventwire.brokers._support.subscription import Subscription
from eventwire.brokers.rabbitmq import envelope
from eventwire.brokers.rabbitmq.connection import RabbitMQConnection
from eventwire.brokers.rabbitmq.options import RabbitMQSettings, group_queue
from eventwire.brokers.rabbitmq.publisher import ConfirmedPublisher
from eventwire.brokers.rabbitmq.subscription import RabbitMQSubscription
from eventwire.core.capabilities import BrokerProfile
from eventwire.core.contract import Health
from eventwire.core.message import Message
from eventwire.core.url import BrokerURL


class RabbitMQBroker(BrokerBase):
    """Publisher and subscriber over one supervised AMQP connection."""

    def __init__(self, url: BrokerURL, profile: BrokerProfile) -> None:
        super().__init__(url, profile)
        self._settings = RabbitMQSettings.from_url(url)
        self._conn = RabbitMQConnection(self._settings, str(url))
        self._publisher = ConfirmedPublisher(self._conn)

    @property
    def declared_queues(self) -> list[str]:
        """Durable queues this object declared (tests delete them afterwards)."""
        return self._conn.topology.queue_names()

    @property
    def declared_exchanges(self) -> list[str]:
        """Exchanges this object declared (the main one and the delay levels)."""
        return list(self._conn.topology.exchanges)

    @property
    def reconnects(self) -> int:
        """How often the connection was re-established since ``connect``."""
        return self._conn.reconnects

    @property
    def publishes_buffered(self) -> int:
        """Messages of publishes in progress (waiting for the connection or their confirms)."""
        return self._publisher.buffered

    async def _connect(self) -> None:
        await self._conn.open()

    async def _publish(self, topic: str, messages: tuple[Message, ...]) -> None:
        outgoing = [(m.body, envelope.encode(m)) for m in messages]
        await self._publisher.publish(
            self._settings.exchange,
            topic,
            outgoing,
            mandatory=self._settings.unroutable == "raise",
        )

    async def _republish(self, topic: str, message: Message, group: str | None) -> None:
        """A replay for one group goes straight into that group's queue (default exchange),
        so no other group or broadcast subscriber receives it at all; ``mandatory``: a group
        whose queue is gone raises ``UnroutableError`` and its dead letter stays."""
        if group is None:
            await self._publish(topic, (message,))
            return
        queue = group_queue(self._settings.exchange, topic, group)
        await self._publisher.publish(
            "", queue, [(message.body, envelope.encode(message))], mandatory=True
        )

    def _subscribe(self, topic: str, group: str | None, prefetch: int) -> Subscription:
        return RabbitMQSubscription(self._conn, self._publisher, topic, group, prefetch)

    async def _flush_publishes(self) -> None:
        await self._publisher.drain()  # each bounded by publish_timeout

    async def _close_connection(self) -> None:
        await self._conn.aclose()

    async def _health(self) -> Health:
        if self._conn.ready:
            return Health(ok=True, detail="connected")
        return Health(ok=False, detail="reconnecting")
