"""Helpers for lag tests: one URL per broker, "publish N, consume M, stop", and cleanup.

The consumer handles exactly ``consume`` messages and then blocks in its handler; the app is
then stopped (a 1 s shutdown grace cancels the blocked call), so every other message goes
back to the broker unacknowledged and the group's backlog is exactly ``publish - consume``
on every broker, RabbitMQ included (AMQP only reports a queue's ready count).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from eventwire import App
from eventwire.brokers.kafka.broker import KafkaBroker
from eventwire.core.message import DEAD_LETTER_GROUP, dead_letter_topic
from eventwire.observability.counters import SubscriberMetrics
from eventwire.observability.lag import LagPolicy
from eventwire.runtime.watching import WatchPolicy

from .probes import running, wait_until

KINDS = ["memory", "sqlite", "rabbitmq", "redis-streams", "nats-jetstream", "kafka"]
_MARKS = {
    "rabbitmq": [pytest.mark.integration, pytest.mark.rabbitmq],
    "redis-streams": [pytest.mark.integration, pytest.mark.redis],
    "nats-jetstream": [pytest.mark.integration, pytest.mark.nats],
    "kafka": [pytest.mark.integration, pytest.mark.kafka],
}
FAST_WATCH = WatchPolicy(health_every=0.5, lag=LagPolicy(every=0.25, timeout=5.0))


def kind_params() -> list[Any]:
    """``KINDS`` as pytest params carrying each one's service markers."""
    return [pytest.param(kind, marks=_MARKS.get(kind, []), id=kind) for kind in KINDS]


def url_for(kind: str, tmp_path: Path) -> str:
    return {
        "memory": f"memory://lag-{uuid.uuid4().hex[:10]}",
        "sqlite": f"sqlite:///{tmp_path / 'lag.db'}?poll=0.02",
        "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/",
        "redis-streams": "redis://127.0.0.1:6379/0",
        "nats-jetstream": "nats://127.0.0.1:4222",
        "kafka": "kafka://127.0.0.1:9092",
    }[kind]


@dataclass(slots=True)
class Worker:
    """An app with one group subscriber that handles ``limit`` messages, then blocks."""

    app: App
    topic: str
    group: str
    limit: int
    handled: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def counters(self) -> SubscriberMetrics:
        return next(iter(self.app._counters.subscribers.values()))


def new_worker(url: str, *, limit: int, watch: WatchPolicy = FAST_WATCH) -> Worker:
    suffix = uuid.uuid4().hex[:10]
    app = App(url, name="lag-worker", shutdown_timeout=1.0, watch=watch)
    worker = Worker(app=app, topic=f"lag.t{suffix}", group=f"g{suffix}", limit=limit)

    @app.subscriber(worker.topic, group=worker.group, concurrency=1, prefetch=1)
    async def handle(payload: dict[str, Any]) -> None:
        if worker.handled >= worker.limit:
            await worker.release.wait()  # never set: the app's stop cancels this call
        worker.handled += 1

    return worker


async def publish(worker: Worker, count: int) -> None:
    for start in range(0, count, 100):
        await worker.app.publish_batch(
            worker.topic, ({"n": n} for n in range(start, min(start + 100, count)))
        )


async def publish_consume_stop(worker: Worker, count: int) -> None:
    """Run the (connected) app, publish ``count`` messages, wait until ``limit`` are
    processed, then stop the app. Publishing while subscribed: RabbitMQ refuses a publish
    that no group queue takes yet."""
    async with running(worker.app):
        await publish(worker, count)
        await wait_until(lambda: worker.app.stats.processed >= worker.limit, deadline=120)
        oldest = worker.counters.oldest
        assert oldest is not None
        await wait_until(lambda: (oldest()[0] or 0.0) > 0.0)  # the blocked call is unsettled


async def wait_for_lag(sub: SubscriberMetrics, expected: int, *, deadline: float = 60) -> None:
    """Until the lag reader reports ``expected`` for ``sub`` (bounded)."""

    def seen() -> bool:
        return sub.backlog is not None and sub.backlog.total == expected

    try:
        await wait_until(seen, deadline=deadline)
    except TimeoutError:
        raise AssertionError(f"lag is {sub.backlog}, expected {expected}") from None


@contextlib.asynccontextmanager
async def cleaned(kind: str, worker: Worker) -> AsyncIterator[None]:
    """Delete what the test made on a shared broker (topics, queues, streams, keys)."""
    async with removed(kind, worker.topic, worker.group):
        yield


@contextlib.asynccontextmanager
async def removed(kind: str, topic: str, group: str = "workers") -> AsyncIterator[None]:
    """Delete ``topic`` (and ``group``'s queue) from the shared ``kind`` broker afterwards."""
    try:
        yield
    finally:
        await _clean(kind, topic, group)


async def _clean(kind: str, topic: str, group: str) -> None:
    with contextlib.suppress(Exception):
        if kind == "kafka":
            await _clean_kafka(topic, group)
        elif kind == "redis-streams":
            import redis.asyncio as aioredis

            client = aioredis.Redis()
            keys = [k async for k in client.scan_iter(match=f"ew:{topic}*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()
        elif kind == "rabbitmq":
            import aio_pika

            from eventwire.brokers.rabbitmq.options import group_queue

            conn = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
            async with conn:
                channel = await conn.channel()
                for name in (
                    group_queue("eventwire", topic, group),
                    group_queue("eventwire", dead_letter_topic(topic), DEAD_LETTER_GROUP),
                ):
                    with contextlib.suppress(Exception):
                        await channel.queue_delete(name)
        elif kind == "nats-jetstream":
            import nats

            from eventwire.brokers.nats.options import NatsOptions
            from eventwire.core.url import BrokerURL

            options = NatsOptions.from_url(BrokerURL.parse("nats://127.0.0.1:4222"))
            nc = await nats.connect("nats://127.0.0.1:4222")
            js = nc.jetstream()
            for name in (topic, dead_letter_topic(topic)):
                with contextlib.suppress(Exception):
                    await js.delete_stream(options.stream(name))
            await nc.close()


async def _clean_kafka(topic: str, group: str) -> None:
    from eventwire.brokers.catalog import open_broker
    from eventwire.brokers.kafka.topics import topology

    admin = open_broker("kafka://127.0.0.1:9092")
    assert isinstance(admin, KafkaBroker)
    try:
        await admin.delete_topics(topology(topic, group))
    finally:
        await admin.aclose()
