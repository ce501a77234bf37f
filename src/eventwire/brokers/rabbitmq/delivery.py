"""Broker layer: a RabbitMQ delivery: decoded from an AMQP message, settled on its channel."""

from __future__ import annotations

from typing import Protocol, cast

import aiormq.abc
from pamqp.commands import Basic

from eventwire.brokers.rabbitmq import envelope
from eventwire.core.message import Delivery, Message


class Settler(Protocol):
    """What a delivery needs from its subscription (``RabbitMQSubscription``)."""

    topic: str
    group: str | None

    async def settle(
        self, channel: aiormq.abc.AbstractChannel, tag: int, *, requeue: bool | None
    ) -> None: ...

    async def nack(
        self,
        delivery: Delivery,
        channel: aiormq.abc.AbstractChannel,
        tag: int,
        delay: float | None,
    ) -> None: ...

    async def dead_letter(
        self, channel: aiormq.abc.AbstractChannel, tag: int, dead: Message
    ) -> None: ...


class RabbitMQDelivery(Delivery):
    """A delivery tied to the channel it came on; settling on a dead channel is a no-op."""

    __slots__ = ("_channel", "_sub", "_tag")

    def __init__(
        self,
        sub: Settler,
        channel: aiormq.abc.AbstractChannel,
        tag: int,
        message: Message,
        attempt: int,
    ) -> None:
        super().__init__(message=message, topic=sub.topic, attempt=attempt, group=sub.group)
        self._sub, self._channel, self._tag = sub, channel, tag

    @classmethod
    def of(cls, sub: Settler, raw: aiormq.abc.DeliveredMessage) -> RabbitMQDelivery:
        """Decode ``raw``; a foreign message with malformed eventwire headers still arrives."""
        properties = raw.header.properties
        redelivered = bool(getattr(raw.delivery, "redelivered", False))
        try:
            message, attempt = envelope.decode(raw.body, properties, redelivered=redelivered)
        except ValueError:
            message, attempt = envelope.decode(raw.body, _strip(properties), redelivered=False)
        tag = cast("Basic.Deliver", raw.delivery).delivery_tag
        return cls(sub, raw.channel, tag or 0, message, attempt)

    async def _ack(self) -> None:
        await self._sub.settle(self._channel, self._tag, requeue=None)

    async def _nack(self, delay: float | None) -> None:
        await self._sub.nack(self, self._channel, self._tag, delay)

    async def _dead_letter(self, dead: Message) -> None:
        await self._sub.dead_letter(self._channel, self._tag, dead)


def _strip(properties: Basic.Properties) -> Basic.Properties:
    # A foreign publisher's malformed attempt/timestamp header: deliver with the bare basics.
    return Basic.Properties(
        content_type=properties.content_type,
        message_id=properties.message_id,
        correlation_id=properties.correlation_id,
        headers={k: v for k, v in (properties.headers or {}).items() if not k.startswith("x-")},
    )
