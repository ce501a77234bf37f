"""Redis adapter behaviour on real servers: refusals, secrets, foreign entries, dead members,
delays, outages, restarts without persistence, Pub/Sub dead letters, poison via the App."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest
import redis.asyncio as aioredis

from brokers.redis.redis_support import FAST, SHARED
from eventwire.brokers.catalog import open_broker
from eventwire.core import headers as h
from eventwire.core.errors import (
    ConfigurationError,
    EventwireError,
    InvalidHeaderError,
    MessageTooLargeError,
    PublishError,
)
from eventwire.core.message import DEAD_LETTER_GROUP, Delivery, Message, dead_letter_topic
from eventwire.reliability.dead_letter import REASON_MAX_ATTEMPTS
from eventwire.reliability.retry import RetryPolicy
from eventwire.runtime.app import App
from eventwire.runtime.context import Context
from eventwire.testing.fault_proxy import FaultProxy
from eventwire.testing.helpers import scale
from eventwire.testing.spawn import RedisServer, spawn_redis

if TYPE_CHECKING:
    from brokers.redis.redis_support import StreamEntries

pytestmark = [pytest.mark.integration, pytest.mark.redis]

CANARY = "canary-Pw-7f3a91c2"
URL = f"{SHARED}?{FAST}"


async def first(sub: AsyncIterator[Delivery], timeout: float = 10.0) -> Delivery:
    async with asyncio.timeout(timeout):
        return await anext(sub)


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (Message(body=b"x", headers={"a": "line\r\nInjected: yes"}), InvalidHeaderError),
        (Message(body=b"x", headers={"a": "bad \udcff utf-8"}), InvalidHeaderError),
        (Message(body=b"x", headers={"a": b"bytes"}), InvalidHeaderError),  # type: ignore[dict-item]  # a bytes header on purpose: it must be refused
        (Message(body=bytes(8 * 1024 * 1024 + 1)), MessageTooLargeError),
    ],
    ids=["crlf", "non-utf8", "bytes-value", "oversize"],
)
@pytest.mark.parametrize("scheme", ["redis", "redis+pubsub"])
async def test_bad_message_refused_before_anything_is_sent(
    bad: Message, error: type[Exception], scheme: str, topic: str, raw: aioredis.Redis
) -> None:
    async with open_broker(f"{scheme}://127.0.0.1:6379/0") as broker, raw.pubsub() as watcher:
        await watcher.subscribe(f"ew:{topic}")
        with pytest.raises(error) as caught:
            await broker.publish(topic, Message(body=b"good"), bad)
        assert "header" in str(caught.value) or "bytes" in str(caught.value)
        assert await raw.exists(f"ew:{topic}") == 0, "something reached the stream"
        seen = await watcher.get_message(ignore_subscribe_messages=True, timeout=0.2)
        assert seen is None, "something was published on the channel"


async def test_canary_password_never_in_logs_errors_or_reprs(
    caplog: pytest.LogCaptureFixture, topic: str
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    async with (
        spawn_redis(password=CANARY) as server,
        FaultProxy(server.host, server.port) as proxy,
    ):
        url = f"redis://:{CANARY}@{proxy.host}:{proxy.port}/0?{FAST}"
        async with open_broker(url) as broker:
            texts += [repr(broker), str(broker), str(broker.url), repr(broker.url)]
            texts.append(str(await broker.health()))
            async with broker.subscribe(topic, group="g") as sub:
                await broker.publish(topic, Message(body=b"x"))
                delivery = await first(sub)
                texts.append(repr(delivery))
                await delivery.ack()
                proxy.refuse()  # an outage long enough to be logged by the read loop
                await proxy.cut()
                async with asyncio.timeout(15):
                    while "reconnecting" not in caplog.text:
                        await asyncio.sleep(0.05)
                texts.append(str(await broker.health()))
                proxy.heal()
                await broker.publish(topic, Message(body=b"y"))
                await (await first(sub)).ack()
            proxy.refuse()
            await proxy.cut()
            broken = open_broker(url)
            with pytest.raises(EventwireError) as refused:
                await broken.connect()
            texts += chain_texts(refused.value)
            await broken.aclose()
        wrong = open_broker(f"redis://:wrong-{CANARY}@{server.host}:{server.port}/0")
        with pytest.raises(ConfigurationError) as denied:
            await wrong.connect()
        texts += [*chain_texts(denied.value), repr(wrong)]
        await wrong.aclose()
    texts.append(caplog.text)
    leaks = [t for t in texts if CANARY in t]
    assert not leaks, leaks


def chain_texts(exc: BaseException | None) -> list[str]:
    out: list[str] = []
    while exc is not None:
        out += [str(exc), repr(exc)]
        exc = exc.__cause__ or exc.__context__
    return out


async def test_foreign_entry_dead_lettered_as_envelope_error(
    topic: str, raw: aioredis.Redis
) -> None:
    async with open_broker(URL) as broker, broker.subscribe(topic, group="g") as sub:
        await raw.xadd(f"ew:{topic}", {"body": b"\xffraw bytes", "foo": "bar"})
        good = Message(body=b"good")
        await broker.publish(topic, good)
        delivery = await first(sub)
        assert delivery.message.id == good.id, "the foreign entry was handed to the app"
        await delivery.ack()
        # Read the DLQ while still subscribed: leaving earlier would hand the foreign
        # entry back to the group if its dead-lettering were still on the wire.
        async with broker.subscribe(dead_letter_topic(topic), group=DEAD_LETTER_GROUP) as dlq:
            dead = await first(dlq)
            await dead.ack()
    # The raw dead letter keeps every field byte for byte (no body field is left out).
    from eventwire.brokers.redis.envelope import fields_of_raw_entry

    assert fields_of_raw_entry(dead.message.body) == {b"body": b"\xffraw bytes", b"foo": b"bar"}
    assert dead.message.headers[h.DLQ_REASON].startswith("unreadable envelope: ")
    assert dead.message.headers["x-eventwire-dlq-raw-format"] == "redis-stream-entry+json-base64"


async def test_killed_member_with_50_unacked_all_redelivered(topic: str) -> None:
    messages = [Message(body=f"m{i}".encode()) for i in range(50)]
    worker_path = Path(__file__).with_name("redis_worker.py")
    async with open_broker(URL) as broker:
        async with broker.subscribe(topic, group="g"):
            pass  # group exists, so the backlog waits for it
        await broker.publish(topic, *messages)
        worker = subprocess.Popen(  # a real process, killed with SIGKILL: no cleanup at all
            [sys.executable, str(worker_path), URL, topic, "g", "50"],
            stdout=subprocess.PIPE,
        )
        try:
            assert worker.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(worker.stdout.readline), 30)
            assert line.strip() == b"HELD 50"
        finally:
            worker.kill()
            worker.wait(10)
            if worker.stdout is not None:
                worker.stdout.close()
        killed_at = time.monotonic()
        got: list[tuple[str, int]] = []
        async with broker.subscribe(topic, group="g", prefetch=100) as sub:
            while len(got) < 50:
                delivery = await first(sub, 15)
                got.append((delivery.message.id, delivery.attempt))
                await delivery.ack()
        took = time.monotonic() - killed_at
    assert sorted(i for i, _ in got) == sorted(m.id for m in messages)
    assert {a for _, a in got} == {2}, "XAUTOCLAIM must count the lost delivery"
    assert took < 10, f"reclaim took {took:.1f} s with claim_idle=1"


async def test_delayed_retry_is_not_reclaimed_early(topic: str) -> None:
    url = URL.replace("claim_idle=1", "claim_idle=0.3")
    async with open_broker(url) as broker, broker.subscribe(topic, group="g") as sub:
        await broker.publish(topic, Message(body=b"later"))
        delivery = await first(sub)
        nacked = time.monotonic()
        await delivery.nack(delay=1.5)
        again = await first(sub)
        waited = time.monotonic() - nacked
        await again.ack()
    assert again.attempt == 2
    assert waited >= 1.45, f"back after {waited:.2f} s: reclaimed before its delay"


async def test_publish_rides_out_an_outage_then_fails_clearly(topic: str) -> None:
    async with spawn_redis() as server, FaultProxy(server.host, server.port) as proxy:
        url = f"redis://{proxy.host}:{proxy.port}/0?{FAST}&publish_timeout=3&max_buffered=3"
        direct = aioredis.Redis.from_url(server.url)
        async with open_broker(url) as broker:
            await broker.publish(topic, Message(body=b"warm-up"))
            proxy.refuse()
            await proxy.cut()
            waiting = asyncio.create_task(broker.publish(topic, Message(body=b"waits")))
            await asyncio.sleep(0.3)  # the outage lasts a while, shorter than the deadline
            assert not waiting.done()
            proxy.heal()
            await asyncio.wait_for(waiting, 10)
            assert await direct.xlen(f"ew:{topic}") == 2
            proxy.refuse()
            await proxy.cut()
            lost = [Message(body=f"lost{i}".encode()) for i in range(4)]
            started = time.monotonic()
            results = await asyncio.gather(
                *(broker.publish(topic, m) for m in lost), return_exceptions=True
            )
            assert all(isinstance(r, PublishError) for r in results), results
            assert time.monotonic() - started < 10  # publish_timeout=3, generous for CPU load
            assert "did not come back" in str(results[0]) or "waiting" in str(results[0])
            proxy.heal()
            await broker.publish(topic, Message(body=b"after"))
        bodies = [f[b"body"] for _, f in cast("StreamEntries", await direct.xrange(f"ew:{topic}"))]
        await direct.aclose()
    assert bodies == [b"warm-up", b"waits", b"after"], "a failed publish reached Redis"


async def test_group_recreated_after_restart_without_persistence(topic: str) -> None:
    async with spawn_redis() as server:  # --save "" and no AOF: a restart forgets everything
        url = f"{server.url}?{FAST}"
        async with open_broker(url) as broker, broker.subscribe(topic, group="g") as sub:
            await broker.publish(topic, Message(body=b"before"))
            await (await first(sub)).ack()
            await server.restart()
            after = Message(body=b"after")
            await broker.publish(topic, after)  # waits for the server, recreates the stream
            delivery = await first(sub, 15)
            await delivery.ack()
    assert delivery.message.id == after.id


async def test_pubsub_dead_letters_go_to_a_stream_and_groups_are_refused(topic: str) -> None:
    async with open_broker(f"redis+pubsub://127.0.0.1:6379/0?{FAST}") as broker:
        with pytest.raises(ConfigurationError, match="no consumer groups"):
            async with broker.subscribe(topic, group="g"):
                pass
        sent = Message(body=b"\x00poison\xff", headers={"tenant": "acme"})
        async with broker.subscribe(topic) as sub:
            await broker.publish(topic, sent)
            delivery = await first(sub)
            await delivery.nack()  # nothing to redeliver on Pub/Sub: settles, no effect
            assert delivery.settled == "nack"
            await broker.publish(topic, sent)
            again = await first(sub)
            await again.dead_letter("bad-input")
        async with broker.subscribe(dead_letter_topic(topic), group=DEAD_LETTER_GROUP) as dlq:
            dead = await first(dlq)
            await dead.ack()
    assert dead.message.body == sent.body
    assert dead.message.headers[h.DLQ_REASON] == "bad-input"
    assert dead.message.headers["tenant"] == "acme"


async def test_one_percent_poison_dead_lettered_by_the_app(topic: str) -> None:
    total = scale(300, 10_000)
    messages = [Message(body=f'{{"n": {i}}}'.encode()) for i in range(total)]
    poison = {m.id for m in messages[::100]}
    handled: Counter[str] = Counter()
    app = App(URL, shutdown_timeout=5)

    @app.subscriber(
        topic,
        group="workers",
        concurrency=8,
        retry=RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05),
    )
    async def handle(body: bytes, ctx: Context) -> None:
        handled[ctx.message.id] += 1
        if ctx.message.id in poison:
            raise ValueError(f"poison {body!r}")

    stop = asyncio.Event()
    async with app:
        runner = asyncio.create_task(app.run(stop))
        await asyncio.wait_for(app.wait_ready(), 20)
        for start in range(0, total, 500):
            await app.broker.publish(topic, *messages[start : start + 500])
        dead: list[Message] = []
        async with app.broker.subscribe(dead_letter_topic(topic), group=DEAD_LETTER_GROUP) as dlq:
            while len(dead) < len(poison):
                delivery = await first(dlq, 60)
                dead.append(delivery.message)
                await delivery.ack()
        async with asyncio.timeout(60):
            while sum(1 for i in handled if i not in poison) < total - len(poison):
                await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(runner, 30)
    by_id = {m.id: m for m in messages}
    assert {m.id for m in dead} == poison
    for message in dead:
        assert message.body == by_id[message.id].body, "dead letter not byte-identical"
        assert message.headers[h.DLQ_REASON] == REASON_MAX_ATTEMPTS
        assert message.headers[h.DLQ_ATTEMPTS] == "3"
        assert "poison" in message.headers[h.DLQ_EXCEPTION_MESSAGE]
    assert all(handled[i] == 3 for i in poison)
    assert all(handled[m.id] == 1 for m in messages if m.id not in poison), "duplicates"


async def test_private_server_helper_restarts_on_same_port(private_redis: RedisServer) -> None:
    client = aioredis.Redis.from_url(private_redis.url)
    await client.set("k", "v")
    port = private_redis.port
    await client.aclose()
    await private_redis.restart()
    assert private_redis.port == port
    client = aioredis.Redis.from_url(private_redis.url)
    assert await client.get("k") == b"v", "appendonly + fsync always keeps acknowledged writes"
    await client.aclose()


async def test_concurrent_publishes_share_pipelines_and_one_pool() -> None:
    async with spawn_redis() as server:
        direct = aioredis.Redis.from_url(server.url)
        async with open_broker(f"{server.url}?{FAST}") as broker:
            messages = [Message(body=b"%d" % i) for i in range(2000)]
            await asyncio.gather(*(broker.publish("conc", m) for m in messages))
            clients = await direct.client_list()
            ours = [c for c in clients if c.get("name") == "eventwire"]
            entries = cast("StreamEntries", await direct.xrange("ew:conc"))
        await direct.aclose()
    assert [f[b"id"].decode() for _, f in entries] == [m.id for m in messages], "order or loss"
    assert 1 <= len(ours) <= 2, f"{len(ours)} connections for 2,000 concurrent publishes"
