"""Broker layer: a RabbitMQ group's backlog, from a passive queue declare on a connection of
its own.

AMQP's ``queue.declare-ok`` carries the queue's *ready* count only: deliveries held
unacknowledged by consumers are not in it (that figure needs the management API, which this
reader does not use), nor are delayed retries parked in the delay levels. A passive declare
never creates the queue: a group that never subscribed answers 404, read as "no group yet".
"""

from __future__ import annotations

import aio_pika.abc
import aiormq.exceptions as amqp

from eventwire.brokers.rabbitmq.broker import RabbitMQBroker
from eventwire.brokers.rabbitmq.connection import RabbitMQConnection
from eventwire.brokers.rabbitmq.errors import translate
from eventwire.brokers.rabbitmq.options import RabbitMQSettings, group_queue
from eventwire.core.contract import Broker
from eventwire.core.lag import Backlog, LagReader


class RabbitMQLagReader:
    """One connection and channel (opened on the first read, reopened after a failure)."""

    def __init__(self, settings: RabbitMQSettings, where: str) -> None:
        self._settings = settings
        self._where = where
        self._conn: aio_pika.abc.AbstractConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None

    async def read(self, topic: str, group: str) -> Backlog | None:
        queue = group_queue(self._settings.exchange, topic, group)
        try:
            channel = await self._open_channel()
            declared = await channel.declare_queue(queue, passive=True)
        except amqp.ChannelNotFoundEntity:
            self._channel = None  # the broker closed the channel with the 404
            return None
        except Exception as exc:
            await self._forget()
            raise translate(
                exc, f"reading the depth of {queue!r}", self._where, self._settings.password
            ) from exc
        result = declared.declaration_result
        return Backlog(waiting=int(result.message_count or 0))

    async def _open_channel(self) -> aio_pika.abc.AbstractChannel:
        if self._conn is None or self._conn.is_closed:
            # Dialled the adapter's way (credentials as arguments), without its supervisor:
            # a failed read just dials again next round.
            self._conn = await RabbitMQConnection(self._settings, self._where)._dial()
            self._channel = None
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._conn.channel(publisher_confirms=False)
        return self._channel

    async def _forget(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:  # noqa: BLE001 - the connection is already broken
                return

    async def aclose(self) -> None:
        await self._forget()


def open_reader(broker: Broker) -> LagReader | None:
    """The reader for a ``RabbitMQBroker``'s server (same credentials, its own connection)."""
    assert isinstance(broker, RabbitMQBroker)
    return RabbitMQLagReader(RabbitMQSettings.from_url(broker.url), str(broker.url))
