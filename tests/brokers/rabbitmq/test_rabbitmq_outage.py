"""Tests: RabbitMQ behind a refusing proxy: reconnects never give up, the buffer is bounded."""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager

import pytest

from brokers.rabbitmq.rabbitmq_support import FULL, HOST, PORT, Opener
from eventwire.brokers.rabbitmq.broker import RabbitMQBroker
from eventwire.core.errors import PublishError
from eventwire.core.message import Delivery, Message
from eventwire.testing.fault_proxy import FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq, pytest.mark.reconnect]


class _FailedReconnects(logging.Handler):
    """Counts the supervisor's "reconnect attempt N ... failed" records: one per dial."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("RabbitMQ reconnect attempt %d"):
            self.count += 1


@contextmanager
def _failed_reconnects() -> Iterator[_FailedReconnects]:
    logger = logging.getLogger("eventwire.rabbitmq")
    handler = _FailedReconnects()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


async def _until(check: Callable[[], bool | Awaitable[bool]], timeout: float, what: str) -> None:
    """Poll ``check()`` (sync or async) until true, failing with ``what`` after ``timeout`` s."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = check()
                if not isinstance(result, bool):
                    result = await result
                if result:
                    return
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"not within {timeout:g} s: {what}")


async def _down(broker: RabbitMQBroker) -> bool:
    return not (await broker.health()).ok


async def _collect(sub: AsyncIterator[Delivery], seen: dict[str, float]) -> None:
    loop = asyncio.get_running_loop()
    async for delivery in sub:
        assert isinstance(delivery, Delivery)
        seen.setdefault(delivery.message.id, loop.time())
        await delivery.ack()


async def test_reconnect_never_gives_up_and_restores_the_consumer(open_rmq: Opener) -> None:
    wanted = 1_000 if FULL else 150
    topic = f"forever.{uuid.uuid4().hex[:8]}"
    loop = asyncio.get_running_loop()
    seen: dict[str, float] = {}
    async with FaultProxy(HOST, PORT) as proxy:
        # max_backoff is the only backoff option: 0.01 s caps every sleep at 0.005-0.01 s.
        consumer = await open_rmq(port=proxy.port, max_backoff=0.01)
        direct = await open_rmq()
        async with consumer.subscribe(topic, group="svc") as sub:
            worker = asyncio.create_task(_collect(sub, seen))
            try:
                with _failed_reconnects() as failures:
                    proxy.refuse()
                    await proxy.cut()
                    started = loop.time()
                    await _until(
                        lambda: failures.count > wanted, 120, f"{wanted} failed reconnects"
                    )
                    outage = loop.time() - started
                    attempts = failures.count
                    proxy.heal()
                    healed = loop.time()
                    marker = Message(body=b"after the outage")
                    await direct.publish(topic, marker)
                    await _until(lambda: marker.id in seen, 10, "delivery after healing")
                    resumed = seen[marker.id] - healed
                    # The proxied broker publishes again too (its publisher waited for it).
                    own = Message(body=b"from the reconnected broker")
                    await consumer.publish(topic, own)
                    await _until(lambda: own.id in seen, 10, "own publish delivered")
            finally:
                worker.cancel()
    assert attempts > wanted
    assert consumer.reconnects >= 1
    print(
        f"\n{attempts} failed reconnects in {outage:.2f}s of refused outage "
        f"({attempts / outage:.0f}/s); consumer received a message {resumed:.3f}s after heal"
    )


async def test_publish_buffer_is_bounded_during_an_outage(open_rmq: Opener) -> None:
    topic = f"buffer.{uuid.uuid4().hex[:8]}"
    loop = asyncio.get_running_loop()
    seen: dict[str, float] = {}
    size = 4
    async with FaultProxy(HOST, PORT) as proxy:
        common = {"port": proxy.port, "publish_buffer": size, "max_backoff": 0.05}
        expiring = await open_rmq(publish_timeout=2, **common)  # outage outlasts its deadline
        patient = await open_rmq(publish_timeout=30, **common)  # healed well before it
        reader = await open_rmq()
        async with reader.subscribe(topic, group="svc") as sub:
            worker = asyncio.create_task(_collect(sub, seen))
            try:
                proxy.refuse()
                await proxy.cut()
                for broker in (expiring, patient):
                    await _until(functools.partial(_down, broker), 20, "outage noticed")

                async def fill(broker: RabbitMQBroker) -> list[tuple[Message, asyncio.Task[None]]]:
                    batch = [Message(body=f"buffered {i}".encode()) for i in range(size)]
                    tasks = [(m, asyncio.create_task(broker.publish(topic, m))) for m in batch]
                    await _until(lambda: broker.publishes_buffered == size, 10, "buffer full")
                    return tasks

                rejected: list[Message] = []
                fast: list[float] = []

                async def overflow(broker: RabbitMQBroker, count: int) -> None:
                    extra = [Message(body=b"overflow") for _ in range(count)]
                    start = loop.time()
                    with pytest.raises(PublishError) as info:
                        await broker.publish(topic, *extra)
                    fast.append(loop.time() - start)
                    text = str(info.value)
                    assert "outage buffer is full" in text
                    assert f"publish_buffer={size}" in text
                    assert "nothing was sent" in text
                    assert "guest@" not in text
                    rejected.extend(extra)

                doomed = await fill(expiring)
                await overflow(expiring, 1)
                kept = await fill(patient)
                await overflow(patient, 1)
                await overflow(patient, 2)  # a batch too
                filled = loop.time()
                # Still refused: the first broker's buffered publishes fail at their deadline.
                for _, task in doomed:
                    with pytest.raises(PublishError, match="not confirmed within 2 s"):
                        await asyncio.wait_for(task, 30)
                expired_after = loop.time() - filled
                assert not any(task.done() for _, task in kept)
                assert expiring.publishes_buffered == 0  # failing freed their places
                proxy.heal()
                healed = loop.time()
                for _, task in kept:  # sent once the connection is back
                    await asyncio.wait_for(task, 40)
                sent_after = loop.time() - healed
                confirmed = [m for m, _ in kept]
                marker = Message(body=b"marker")
                await patient.publish(topic, marker)
                confirmed.append(marker)
                await _until(lambda: {m.id for m in confirmed} <= seen.keys(), 15, "delivered")
            finally:
                worker.cancel()
    failed = {m.id for m in rejected} | {m.id for m, _ in doomed}
    # Whatever returned was delivered; nothing that failed while refused ever left the client.
    assert not failed & seen.keys()
    assert max(fast) < 1.0
    assert expired_after < 10
    print(
        f"\noverflow rejected in at most {max(fast) * 1000:.1f} ms; buffered publishes expired "
        f"{expired_after:.2f}s after filling (timeout 2s); kept ones confirmed "
        f"{sent_after:.3f}s after heal"
    )


async def test_full_buffer_while_connected_waits_for_confirms(open_rmq: Opener) -> None:
    # Connected, a full buffer is back-pressure: confirms free places within milliseconds.
    topic = f"pressure.{uuid.uuid4().hex[:8]}"
    seen: dict[str, float] = {}
    publisher = await open_rmq(publish_buffer=1, publish_timeout=30)
    async with publisher.subscribe(topic, group="svc") as sub:
        worker = asyncio.create_task(_collect(sub, seen))
        try:
            batch = [Message(body=f"{i}".encode()) for i in range(20)]
            await asyncio.gather(*(publisher.publish(topic, m) for m in batch))
            await _until(lambda: {m.id for m in batch} <= seen.keys(), 15, "all delivered")
        finally:
            worker.cancel()
