"""Tests: constants, types and clean-up shared by the tests that use RabbitMQ."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika

from eventwire.brokers.rabbitmq import delays
from eventwire.brokers.rabbitmq.broker import RabbitMQBroker

HOST, PORT = "127.0.0.1", 5672
FULL = os.environ.get("EVENTWIRE_TEST_SCALE", "").lower() == "full"

Opener = Callable[..., Awaitable[RabbitMQBroker]]


@contextlib.asynccontextmanager
async def topology_removed(exchange: str) -> AsyncIterator[None]:
    """Delete, after the block, what every ``RabbitMQBroker`` made inside it declared under
    ``exchange`` (group and DLQ queues, the ``.delay-*`` level queues and exchanges, the
    deliver exchange) and ``exchange`` itself; names of other exchanges are left alone, so
    a shared exchange's topology (``eventwire.delay-*``) is never deleted under other runs."""
    made: list[RabbitMQBroker] = []
    original = RabbitMQBroker.__init__

    def recording(self: RabbitMQBroker, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    RabbitMQBroker.__init__ = recording  # type: ignore[method-assign]  # patched on the class to record every broker the test makes
    try:
        yield
    finally:
        RabbitMQBroker.__init__ = original  # type: ignore[method-assign]  # restores the method patched above
        ours = (f"{exchange}:", f"{exchange}.")
        queues = {q for b in made for q in b.declared_queues if q.startswith(ours)}
        exchanges = {x for b in made for x in b.declared_exchanges if x.startswith(ours)}
        # A worker process's brokers are not recorded here: the delay levels by their names.
        levels = range(delays.LEVELS)
        queues |= {delays.level_queue(exchange, level) for level in levels}
        exchanges |= {delays.level_exchange(exchange, level) for level in levels}
        exchanges |= {delays.deliver_exchange(exchange), exchange}
        await delete_topology(queues, exchanges)


async def delete_topology(queues: set[str], exchanges: set[str]) -> None:
    """Delete these queues, then these exchanges (a missing one is not an error)."""
    connection = await aio_pika.connect(host=HOST, port=PORT)
    try:
        channel = await (await connection.channel()).get_underlay_channel()
        for queue in sorted(queues):
            await channel.queue_delete(queue)
        for name in sorted(exchanges):
            await channel.exchange_delete(name)
    finally:
        await connection.close()
