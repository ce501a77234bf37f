"""Broker layer: a RabbitMQ delivery: decoded from an AMQP message, settled on its channel."""

from __future__ import annotations

import hashlib
from typing import Protocol, cast

import aiormq.abc
from pamqp.commands import Basic

from eventwire.brokers.rabbitmq import envelope, frames
from eventwire.core import headers as h
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
    def of(
        cls, sub: Settler, raw: aiormq.abc.DeliveredMessage, *, via_retry: bool, dead_letters: bool
    ) -> RabbitMQDelivery:
        """Decode ``raw`` (``envelope.decode`` is total: a foreign message still arrives)."""
        message, attempt = envelope.decode(
            raw.body,
            raw.header.properties,
            redelivered=bool(getattr(raw.delivery, "redelivered", False)),
            via_retry=via_retry,
            dead_letters=dead_letters,
            problems=frames.problems_of(raw.header),
        )
        tag = cast("Basic.Deliver", raw.delivery).delivery_tag
        return cls(sub, raw.channel, tag or 0, message, attempt)

    @classmethod
    def raw(
        cls, sub: Settler, raw: aiormq.abc.DeliveredMessage, problems: tuple[str, ...]
    ) -> RabbitMQDelivery:
        """A dead letter whose properties cannot be read at all: its body and the reason."""
        reason = f"{envelope.UNREADABLE}: {'; '.join(problems)}"
        message = Message(
            body=raw.body,
            id="amqp-" + hashlib.sha256(raw.body).hexdigest()[:32],
            headers={h.DLQ_REASON: reason},
            timestamp=0.0,
        )
        tag = cast("Basic.Deliver", raw.delivery).delivery_tag
        return cls(sub, raw.channel, tag or 0, message, 1)

    async def _ack(self) -> None:
        await self._sub.settle(self._channel, self._tag, requeue=None)

    async def _nack(self, delay: float | None) -> None:
        await self._sub.nack(self, self._channel, self._tag, delay)

    async def _dead_letter(self, dead: Message) -> None:
        await self._sub.dead_letter(self._channel, self._tag, dead)
