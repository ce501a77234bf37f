"""Tests: RabbitMQ through the TCP fault proxy: cuts lose nothing, blackholes are noticed."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest

from brokers.rabbitmq.rabbitmq_support import FULL, HOST, PORT, Opener
from eventwire.brokers.rabbitmq import options as names
from eventwire.core.errors import PublishError
from eventwire.core.message import Delivery, Message
from eventwire.testing.fault_proxy import FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq, pytest.mark.reconnect]


class Tally:
    """Idempotent handling: each id processed once, every further copy counted as a duplicate."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.duplicates = 0

    async def consume(self, sub: AsyncIterator[Delivery]) -> None:
        loop = asyncio.get_running_loop()
        async for delivery in sub:
            assert isinstance(delivery, Delivery)
            if delivery.message.id in self.seen:
                self.duplicates += 1
            else:
                self.seen[delivery.message.id] = loop.time()
            await delivery.ack()

    async def wait_for(self, message_id: str, timeout: float) -> float:
        async with asyncio.timeout(timeout):
            while message_id not in self.seen:
                await asyncio.sleep(0.005)
        return self.seen[message_id]


async def test_two_cuts_of_every_connection_lose_nothing(open_rmq: Opener) -> None:
    total, batch = (10_000, 50) if FULL else (1_000, 20)
    topic = f"cut.{uuid.uuid4().hex[:8]}"
    loop = asyncio.get_running_loop()
    async with FaultProxy(HOST, PORT) as proxy:
        consumer = await open_rmq(port=proxy.port)
        publisher = await open_rmq(port=proxy.port)
        tally = Tally()
        messages = [Message(body=f'{{"n": {i}}}'.encode()) for i in range(total)]
        confirmed: list[Message] = []
        resumed: list[float] = []
        async with consumer.subscribe(topic, group="svc", prefetch=100) as sub:
            worker = asyncio.create_task(tally.consume(sub))
            cut_points = {total // 3 // batch * batch, 2 * total // 3 // batch * batch}
            try:
                for start in range(0, total, batch):
                    if start in cut_points:
                        assert await proxy.cut() >= 2  # both clients' connections
                        cut_at = loop.time()
                        marker = Message(body=b'{"marker": true}')
                        await publisher.publish(topic, marker)  # waits for the reconnect
                        confirmed.append(marker)
                        # From the cut itself, so this bounds reconnect + restore + delivery.
                        resumed.append(await tally.wait_for(marker.id, 10.0) - cut_at)
                    chunk = messages[start : start + batch]
                    await publisher.publish(topic, *chunk)
                    confirmed.extend(chunk)
                async with asyncio.timeout(60):
                    while not {m.id for m in confirmed} <= tally.seen.keys():
                        await asyncio.sleep(0.01)
            finally:
                worker.cancel()
    lost = {m.id for m in confirmed} - tally.seen.keys()
    assert not lost
    assert consumer.reconnects >= 2
    assert publisher.reconnects >= 2
    assert all(gap < 10.0 for gap in resumed)
    print(
        f"\ncuts: {proxy.cuts}, confirmed {len(confirmed)}, lost {len(lost)}, "
        f"duplicates absorbed {tally.duplicates}, first delivery after each cut "
        f"{', '.join(f'{g:.3f}s' for g in resumed)}"
    )


async def test_blackholed_connection_noticed_and_consumer_restored(open_rmq: Opener) -> None:
    topic = f"blackhole.{uuid.uuid4().hex[:8]}"
    loop = asyncio.get_running_loop()
    async with FaultProxy(HOST, PORT) as proxy:
        consumer = await open_rmq(port=proxy.port)  # default heartbeat
        direct = await open_rmq()
        tally = Tally()
        async with consumer.subscribe(topic, group="svc") as sub:
            worker = asyncio.create_task(tally.consume(sub))
            try:
                proxy.blackhole()  # open connections go silent; new ones still work
                started = loop.time()
                async with asyncio.timeout(20):
                    while consumer.reconnects < 1:
                        await asyncio.sleep(0.02)
                noticed = loop.time() - started  # detected and already replaced by now
                back = loop.time()
                marker = Message(body=b"after")
                await direct.publish(topic, marker)
                resumed = await tally.wait_for(marker.id, 10.0) - back
            finally:
                worker.cancel()
    assert noticed < 15.0
    print(f"\nblackhole noticed after {noticed:.1f}s, consumption resumed {resumed:.3f}s later")


async def test_publish_during_outage_waits_then_fails_clearly(open_rmq: Opener) -> None:
    topic = f"outage.{uuid.uuid4().hex[:8]}"
    async with FaultProxy(HOST, PORT) as proxy:
        publisher = await open_rmq(port=proxy.port, publish_timeout=1)
        reader = await open_rmq()
        async with reader.subscribe(topic, group="svc") as sub:
            proxy.refuse()
            await proxy.cut()
            with pytest.raises(PublishError) as info:
                await publisher.publish(topic, Message(body=b"lost?"))
            assert "not confirmed" in str(info.value)
            assert "not sent" in str(info.value)
            assert "***" in str(info.value) or "guest" not in str(info.value)
            proxy.heal()
            kept = Message(body=b"kept")
            async with asyncio.timeout(15):
                while True:  # the connection comes back on its own; publish then succeeds
                    try:
                        await publisher.publish(topic, kept)
                        break
                    except PublishError:
                        continue
                first = await anext(sub)
    assert first.message.id == kept.id


async def _consumers(queue: str) -> int:
    connection = await aio_pika.connect(host=HOST, port=PORT)
    try:
        channel = await (await connection.channel()).get_underlay_channel()
        ok = await channel.queue_declare(queue, passive=True)
        return ok.consumer_count or 0
    finally:
        await connection.close()


async def test_quick_cuts_restore_each_consumer_exactly_once(
    open_rmq: Opener, exchange: str
) -> None:
    topic = f"twice.{uuid.uuid4().hex[:8]}"
    queue = names.group_queue(exchange, topic, "svc")
    async with FaultProxy(HOST, PORT) as proxy:
        broker = await open_rmq(port=proxy.port)
        tally = Tally()
        async with broker.subscribe(topic, group="svc") as sub:
            worker = asyncio.create_task(tally.consume(sub))
            try:
                for pause in (0.0, 0.02, 0.1, 0.3):  # a cut during dial/restore, then again
                    await proxy.cut()
                    await asyncio.sleep(pause)
                    await proxy.cut()
                    marker = Message(body=b"marker")
                    await broker.publish(topic, marker)  # waits for the reconnect
                    await tally.wait_for(marker.id, 30.0)
                    assert await _consumers(queue) == 1
            finally:
                worker.cancel()


async def test_failed_reconnect_tries_log_one_line_each_without_tracebacks(
    open_rmq: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 10: aiormq logged a traceback for the lost connection and an ERROR per failed
    dial; now one line per try (broker, attempt, next delay, cause), tracebacks at DEBUG."""
    caplog.set_level(logging.INFO)
    async with FaultProxy(HOST, PORT) as proxy:
        broker = await open_rmq(port=proxy.port, max_backoff=0.2)
        await proxy.aclose()  # the port is closed: every dial is refused
        async with asyncio.timeout(30):
            while len(_tries(caplog)) < 3:
                await asyncio.sleep(0.05)
        await broker.aclose()
    tries = _tries(caplog)
    for number, record in enumerate(tries[:3], start=1):
        line = record.getMessage()
        assert f"attempt {number} to amqp://guest:***@{HOST}:{proxy.port}/" in line
        assert "Connect call failed" in line  # the cause
        assert re.search(r"next try in \d+\.\d\d s$", line)
    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not noisy, [(r.name, r.getMessage()) for r in noisy]
    assert "\n" not in "".join(r.getMessage() for r in caplog.records)


async def test_client_tracebacks_are_kept_at_debug(
    open_rmq: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiormq")
    async with FaultProxy(HOST, PORT) as proxy:
        broker = await open_rmq(port=proxy.port, max_backoff=0.2)
        await proxy.aclose()
        async with asyncio.timeout(30):
            while not _tries(caplog):
                await asyncio.sleep(0.05)
        await broker.aclose()
    demoted = [r for r in caplog.records if r.name.startswith("aiormq") and r.exc_info]
    assert demoted
    assert all(r.levelno == logging.DEBUG for r in demoted)


def _tries(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "reconnect attempt" in r.getMessage()]
