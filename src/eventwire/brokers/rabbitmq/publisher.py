"""Broker layer: confirmed, pipelined publishing that waits out outages within a deadline."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence

import aiormq
import aiormq.exceptions
from pamqp.commands import Basic

from eventwire.brokers.rabbitmq.connection import RabbitMQConnection
from eventwire.brokers.rabbitmq.errors import TRANSIENT, describe, translate
from eventwire.core.errors import PublishError

log = logging.getLogger("eventwire.rabbitmq")

Outgoing = tuple[bytes, Basic.Properties]


class UnroutableError(PublishError):
    """A ``mandatory`` publish came back (basic.return): no queue took it, so it is not sent."""


class _Budget:
    """Bounds how many messages may wait for the connection at once (the outage buffer)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._waiting = 0
        self._freed = asyncio.Condition()

    def has_room(self, count: int) -> bool:
        return self.used + min(count, self.capacity) <= self.capacity

    async def acquire(self, count: int) -> int:
        count = min(count, self.capacity)
        if self.used + count <= self.capacity:  # fast path: no outage, no waiting
            self.used += count
            return count
        self._waiting += 1
        try:
            async with self._freed:
                await self._freed.wait_for(lambda: self.used + count <= self.capacity)
                self.used += count
        finally:
            self._waiting -= 1
        return count

    async def release(self, count: int) -> None:
        self.used -= count
        if self._waiting:  # only wake waiters that exist
            async with self._freed:
                self._freed.notify_all()


class ConfirmedPublisher:
    """Sends messages and returns only once the broker confirmed each one.

    A publish waits up to ``publish_timeout`` for the connection to come back; after a failure
    only the unconfirmed messages are sent again (the broker may hold a copy whose confirm was
    lost, so consumers deduplicate by message id). On the deadline it raises ``PublishError``.
    At most ``publish_buffer`` messages hold a place at once: while the connection is down a
    publish that finds no place fails at once (no room can appear before the reconnect, and
    callers queueing behind a full buffer would make it unbounded); while connected it waits
    for confirms to free places (back-pressure), within the same deadline.
    """

    def __init__(self, connection: RabbitMQConnection) -> None:
        self._conn = connection
        self._settings = connection.settings
        self._budget = _Budget(self._settings.publish_buffer)
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def buffered(self) -> int:
        """Messages holding a place in the buffer (waiting for the connection or confirms)."""
        return self._budget.used

    async def drain(self) -> None:
        """Wait until every publish in flight has been confirmed or has failed."""
        await self._idle.wait()

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        outgoing: Sequence[Outgoing],
        *,
        mandatory: bool = False,
    ) -> None:
        """Send and wait for every confirm.

        ``mandatory``: a message no queue takes raises ``UnroutableError`` instead of being
        confirmed and dropped (application publishes unless ``unroutable=drop``, and always
        the adapter's own copies, which must reach their retry queue or DLQ).
        """
        self._in_flight += 1
        self._idle.clear()
        try:
            await self._publish(exchange, routing_key, outgoing, mandatory)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def _publish(
        self, exchange: str, routing_key: str, outgoing: Sequence[Outgoing], mandatory: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.publish_timeout
        if not self._conn.ready and not self._budget.has_room(len(outgoing)):
            raise PublishError(
                f"publishing {len(outgoing)} message(s) to {routing_key!r} at "
                f"{self._conn.where}: the broker is unreachable and the outage buffer is full "
                f"({self._budget.used} message(s) wait, publish_buffer="
                f"{self._budget.capacity}); nothing was sent"
            )
        try:
            async with asyncio.timeout_at(deadline):
                reserved = await self._budget.acquire(len(outgoing))
        except TimeoutError:
            raise PublishError(
                f"publishing {len(outgoing)} message(s) to {routing_key!r} at "
                f"{self._conn.where}: the outage buffer stayed full for "
                f"{self._settings.publish_timeout:g} s; nothing was sent"
            ) from None
        try:
            await self._send_until_confirmed(exchange, routing_key, outgoing, deadline, mandatory)
        finally:
            await self._budget.release(reserved)

    async def _send_until_confirmed(
        self,
        exchange: str,
        routing_key: str,
        outgoing: Sequence[Outgoing],
        deadline: float,
        mandatory: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        pending = list(range(len(outgoing)))
        last: BaseException | None = None
        while pending:
            remaining = deadline - loop.time()
            if remaining <= 0:
                self._give_up(routing_key, len(outgoing), len(pending), last)
            try:
                channel = await self._conn.publish_channel(remaining)
                async with asyncio.timeout_at(deadline):
                    pending, error = await self._send(
                        channel, exchange, routing_key, outgoing, pending, mandatory=mandatory
                    )
            except TimeoutError as exc:
                last = exc
                continue
            except TRANSIENT as exc:
                error = exc
            if error is None:
                continue
            if isinstance(error, aiormq.exceptions.PublishError):
                raise UnroutableError(
                    f"publishing to {routing_key!r} at {self._conn.where}: no queue takes it "
                    "(no group has subscribed to this topic yet and no broadcast subscriber "
                    "listens), so the broker returned it; "
                    f"{len(pending)} message(s) not delivered: subscribe the group first (its "
                    "queue keeps messages from then on) or use ?unroutable=drop for pub/sub"
                ) from error
            if isinstance(error, aiormq.exceptions.DeliveryError) or not isinstance(
                error, TRANSIENT
            ):
                # basic.nack: the broker refused (a queue at its limit); retrying won't help.
                raise translate(
                    error,
                    f"publishing to {routing_key!r}",
                    self._conn.where,
                    self._settings.password,
                ) from error
            last = error
            # The connection died under us; the supervisor is reconnecting meanwhile.
            await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))

    def _give_up(
        self, routing_key: str, total: int, missing: int, last: BaseException | None
    ) -> None:
        cause = describe(last, self._settings.password) if last else "no connection"
        error = PublishError(
            f"publishing to {routing_key!r} at {self._conn.where}: {missing} of {total} "
            f"message(s) not confirmed within {self._settings.publish_timeout:g} s ({cause}); "
            "treat them as not sent"
        )
        raise error from last

    async def _send(
        self,
        channel: aiormq.Channel,
        exchange: str,
        routing_key: str,
        outgoing: Sequence[Outgoing],
        pending: list[int],
        *,
        mandatory: bool,
    ) -> tuple[list[int], BaseException | None]:
        """Send ``pending`` in windows of unconfirmed publishes.

        Returns what is still unconfirmed and the first failure (None when all confirmed).
        """

        def send(i: int) -> Awaitable[object]:
            body, properties = outgoing[i]
            return channel.basic_publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=mandatory,
                wait=False,
            )

        if len(pending) == 1:  # one message: no gather, no extra task
            try:
                await send(pending[0])
            except Exception as exc:  # noqa: BLE001 - classified by the caller
                return pending, exc
            return [], None
        window = self._settings.confirm_window
        for start in range(0, len(pending), window):
            chunk = pending[start : start + window]
            results = await asyncio.gather(*(send(i) for i in chunk), return_exceptions=True)
            failed = [
                i for i, r in zip(chunk, results, strict=True) if isinstance(r, BaseException)
            ]
            if failed:
                first = next(r for r in results if isinstance(r, BaseException))
                return [*failed, *pending[start + window :]], first
        return [], None
