"""Testing layer: basic conformance cases every profile runs (at-most-once ones included)."""

from __future__ import annotations

import asyncio
import os

import pytest

from eventwire.core import headers as h
from eventwire.core.errors import (
    ClosedError,
    ConfigurationError,
    InvalidHeaderError,
    MessageTooLargeError,
)
from eventwire.core.message import Delivery, Message
from eventwire.testing.conformance.context import CaseContext, CaseFixtures, requires
from eventwire.testing.conformance.helpers import (
    collect,
    collect_until,
    expect_nothing,
    ids,
    make_messages,
    next_delivery,
)


def assert_same_envelope(got: Delivery, sent: Message, topic: str) -> None:
    """Every envelope field and header arrives as sent; adapters may add reserved headers."""
    m = got.message
    assert got.topic == topic
    assert m.id == sent.id
    assert m.body == sent.body, "body changed in transit"
    assert m.key == sent.key
    assert m.content_type == sent.content_type
    assert m.correlation_id == sent.correlation_id
    assert m.causation_id == sent.causation_id
    assert abs(m.timestamp - sent.timestamp) < 0.01, "timestamp not carried"
    for name, value in sent.headers.items():
        assert m.headers.get(name) == value, f"header {name!r} changed or missing"
    extra = [n for n in m.headers if n not in sent.headers and not _reserved(n)]
    assert not extra, f"unexpected headers {extra}: only reserved {h.PREFIX}* ones may be added"


def _reserved(name: str) -> bool:
    # Envelope fields may travel as headers (core/headers.py); adapters may leave them visible.
    return name.startswith(h.PREFIX) or name == h.CONTENT_TYPE


class BasicCases(CaseFixtures):
    """Publish/subscribe, isolation, concurrency, settle-once and client-side errors."""

    async def test_publish_subscribe_envelope(self, ctx: CaseContext) -> None:
        broker = await ctx.open()
        group = ctx.default_group()
        sent = [
            Message(
                body=b"\xff\xfe\x00\x80 not utf-8 \xc3\x28",
                key="customer-42",
                headers={"tenant": "acme", "x-note": "ünïcødé ✓", "empty": ""},
                content_type="application/x-custom",
                correlation_id="corr-1",
                causation_id="cause-1",
            ),
            Message(body=b""),
            Message(body=os.urandom(4096), key="k", content_type="application/octet-stream"),
            Message(body=b'{"ok": true}', content_type="application/json"),
        ]
        async with broker.subscribe(ctx.topic, group=group) as sub:
            await broker.publish(ctx.topic, *sent)
            got = await collect(sub, len(sent), ctx.scale.timeout)
        by_id = {d.message.id: d for d in got}
        assert sorted(by_id) == sorted(ids(sent)), "lost or duplicated messages"
        for message in sent:
            delivery = by_id[message.id]
            assert_same_envelope(delivery, message, ctx.topic)
            assert delivery.attempt == 1
            assert delivery.group == group

    async def test_publish_from_one_client_consume_from_another(self, ctx: CaseContext) -> None:
        publisher, consumer = await ctx.open(), await ctx.open()
        messages = make_messages(ctx.scale.messages)
        async with consumer.subscribe(ctx.topic, group=ctx.default_group()) as sub:
            # Many small concurrent publish calls plus one batch: both paths must be complete.
            half = len(messages) // 2
            await asyncio.gather(*(publisher.publish(ctx.topic, m) for m in messages[:half]))
            await publisher.publish(ctx.topic, *messages[half:])
            got = await collect(sub, len(messages), ctx.scale.timeout)
        assert sorted(ids(got)) == sorted(ids(messages)), "lost or duplicated messages"

    async def test_topic_isolation(self, ctx: CaseContext) -> None:
        broker = await ctx.open()
        other = ctx.new_topic("other")
        messages = make_messages(20)
        fence = Message(body=b"fence")
        async with (
            broker.subscribe(ctx.topic, group=ctx.default_group()) as mine,
            broker.subscribe(other, group=ctx.default_group()) as theirs,
        ):
            await broker.publish(ctx.topic, *messages)
            await broker.publish(other, fence)
            got_other = await collect_until(
                theirs, lambda got: fence.id in ids(got), ctx.scale.timeout
            )
            got_mine = await collect(mine, len(messages), ctx.scale.timeout)
            assert ids(got_other) == [fence.id], "a message leaked into another topic"
            assert sorted(ids(got_mine)) == sorted(ids(messages))
            await expect_nothing(mine, ctx.scale.quiet)

    async def test_many_topics_concurrently(self, ctx: CaseContext) -> None:
        publisher, consumer = await ctx.open(), await ctx.open()
        topics = [ctx.new_topic(f"t{i}") for i in range(ctx.scale.topics)]
        per_topic = max(ctx.scale.messages // ctx.scale.topics, 5)
        sent = {t: make_messages(per_topic, prefix=t) for t in topics}

        async def consume(topic: str) -> list[str]:
            async with consumer.subscribe(topic, group=ctx.default_group()) as sub:
                ready.release()
                return ids(await collect(sub, per_topic, ctx.scale.timeout))

        ready = asyncio.Semaphore(0)
        tasks = [asyncio.create_task(consume(t)) for t in topics]
        for _ in topics:
            async with asyncio.timeout(ctx.scale.timeout):
                await ready.acquire()
        await asyncio.gather(*(publisher.publish(t, *sent[t]) for t in topics))
        results = await asyncio.gather(*tasks)
        for topic, got in zip(topics, results, strict=True):
            assert sorted(got) == sorted(ids(sent[topic])), f"{topic}: wrong messages"

    async def test_settle_once(self, ctx: CaseContext) -> None:
        broker = await ctx.open()
        first, fence = Message(body=b"first"), Message(body=b"fence")
        async with broker.subscribe(ctx.topic, group=ctx.default_group()) as sub:
            await broker.publish(ctx.topic, first)
            delivery = await next_delivery(sub, ctx.scale.timeout)
            await delivery.ack()
            # Later settles must neither raise nor act: no redelivery, no dead letter.
            await delivery.ack()
            await delivery.nack()
            await delivery.nack(delay=0.01)
            await delivery.dead_letter("too-late")
            assert delivery.settled == "ack"
            await broker.publish(ctx.topic, fence)
            after = await collect_until(sub, lambda got: fence.id in ids(got), ctx.scale.timeout)
            assert ids(after) == [fence.id], "a settled message came back"
            await expect_nothing(sub, ctx.scale.quiet)

    async def test_client_errors_translated(self, ctx: CaseContext) -> None:
        broker = await ctx.open()
        limit = ctx.caps.max_body_bytes
        good, fence = Message(body=b"good"), Message(body=b"fence")
        async with broker.subscribe(ctx.topic, group=ctx.default_group()) as sub:
            with pytest.raises(InvalidHeaderError):
                await broker.publish(ctx.topic, good, Message(body=b"x", headers={"a": "b\r\nc"}))
            with pytest.raises(InvalidHeaderError):
                await broker.publish(ctx.topic, Message(body=b"x", headers={"": "v"}))
            with pytest.raises(MessageTooLargeError):
                await broker.publish(ctx.topic, good, Message(body=bytes(limit + 1)))
            with pytest.raises(ConfigurationError):
                await broker.publish("bad topic name!", good)
            await broker.publish(ctx.topic, fence)
            got = await collect_until(sub, lambda got: fence.id in ids(got), ctx.scale.timeout)
            assert ids(got) == [fence.id], "a message of a refused publish call was sent"
        await broker.aclose()
        with pytest.raises(ClosedError):
            await broker.publish(ctx.topic, good)
        await broker.aclose()  # idempotent

    @requires("publish_dedup")
    async def test_publish_dedup(self, ctx: CaseContext) -> None:
        broker = await ctx.open()
        once, fence = Message(body=b"once"), Message(body=b"fence")
        async with broker.subscribe(ctx.topic, group=ctx.default_group()) as sub:
            await broker.publish(ctx.topic, once)
            await broker.publish(ctx.topic, once)  # a retried publish: same message id
            await broker.publish(ctx.topic, fence)
            got = await collect_until(sub, lambda got: fence.id in ids(got), ctx.scale.timeout)
        assert ids(got) == [once.id, fence.id], "a republished message id was not dropped"
