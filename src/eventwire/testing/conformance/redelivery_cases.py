"""Testing layer: conformance cases for nack, returned deliveries, delays and dead letters."""

from __future__ import annotations

import asyncio
from collections import Counter

from eventwire.core import headers as h
from eventwire.core.message import DEAD_LETTER_GROUP, Message, dead_letter_topic
from eventwire.testing.conformance.basic_cases import assert_same_envelope
from eventwire.testing.conformance.context import AT_LEAST_ONCE, CaseContext, CaseFixtures, requires
from eventwire.testing.conformance.helpers import (
    collect,
    collect_until,
    expect_nothing,
    ids,
    make_messages,
    next_delivery,
)

# Timers on brokers have millisecond granularity; a redelivery this much early still counts.
_TIMER_SLACK = 0.02


class RedeliveryCases(CaseFixtures):
    """What happens to messages that are not simply acked."""

    @requires("redelivery", AT_LEAST_ONCE)
    async def test_redelivery_after_nack(self, ctx: CaseContext) -> None:
        broker = await ctx.open()
        sent = Message(body=b"\x00retry me\xff", key="k1", headers={"h": "v"})
        async with broker.subscribe(ctx.topic, group=ctx.default_group()) as sub:
            await broker.publish(ctx.topic, sent)
            first = await next_delivery(sub, ctx.scale.timeout)
            assert first.attempt == 1
            await first.nack()
            again = await next_delivery(sub, ctx.scale.timeout)
            assert again.message.id == sent.id, "nacked message not redelivered first"
            assert again.attempt == 2, "attempt did not increase on redelivery"
            assert_same_envelope(again, sent, ctx.topic)
            await again.ack()
            await expect_nothing(sub, ctx.scale.quiet)

    @requires("redelivery", AT_LEAST_ONCE)
    async def test_continue_after_many_errors(self, ctx: CaseContext) -> None:
        broker = await ctx.open()
        messages = make_messages(ctx.scale.failures)
        fails_before_success = 2
        attempts: Counter[str] = Counter()
        acked: dict[str, int] = {}
        async with broker.subscribe(ctx.topic, group=ctx.default_group()) as sub:
            await broker.publish(ctx.topic, *messages)
            try:
                async with asyncio.timeout(ctx.scale.timeout * 2):
                    async for delivery in sub:
                        attempts[delivery.message.id] += 1
                        if delivery.attempt <= fails_before_success:
                            await delivery.nack()
                        else:
                            acked[delivery.message.id] = delivery.attempt
                            await delivery.ack()
                        if len(acked) == len(messages):
                            break
            except TimeoutError:
                raise AssertionError(
                    f"{len(acked)} of {len(messages)} acked after nacks; attempts seen: "
                    f"{sorted(Counter(attempts.values()).items())}"
                ) from None
        assert sorted(acked) == sorted(ids(messages))
        assert set(acked.values()) == {fails_before_success + 1}, "attempts miscounted"
        assert all(n == fails_before_success + 1 for n in attempts.values())

    @requires("redelivery", "consumer_groups", AT_LEAST_ONCE)
    async def test_unsettled_returned_on_subscription_exit(self, ctx: CaseContext) -> None:
        broker, other = await ctx.open(), await ctx.open()
        group = ctx.group()
        sent = make_messages(3)
        async with broker.subscribe(ctx.topic, group=group, prefetch=10) as sub:
            await broker.publish(ctx.topic, *sent)
            held = await collect(sub, len(sent), ctx.scale.timeout, settle="none")
        # Settling after the subscription ended must be a harmless no-op.
        await held[0].ack()
        async with other.subscribe(ctx.topic, group=group) as sub:
            again = await collect(sub, len(sent), ctx.scale.timeout)
        assert sorted(ids(again)) == sorted(ids(sent)), "unsettled deliveries not returned"
        assert all(d.attempt == 2 for d in again), [d.attempt for d in again]

    @requires("delayed_redelivery", AT_LEAST_ONCE)
    async def test_delayed_redelivery(self, ctx: CaseContext) -> None:
        broker = await ctx.open()
        delay = 0.5
        sent, other = Message(body=b"later"), Message(body=b"meanwhile")
        loop = asyncio.get_running_loop()
        async with broker.subscribe(ctx.topic, group=ctx.default_group()) as sub:
            await broker.publish(ctx.topic, sent)
            first = await next_delivery(sub, ctx.scale.timeout)
            # The delay must not hold up other messages of the topic. ``other`` is published
            # before the nack: published after it, a loop stalled past ``delay`` by CPU load
            # (shared CI cores) would see the redelivery first and fail a correct broker.
            await broker.publish(ctx.topic, other)
            nacked_at = loop.time()
            await first.nack(delay=delay)
            got = await collect_until(
                sub, lambda got: sent.id in ids(got), ctx.scale.timeout + delay
            )
            came_back_after = loop.time() - nacked_at
        assert ids(got)[0] == other.id, "a delayed redelivery blocked the next message"
        assert ids(got) == [other.id, sent.id]
        assert got[-1].attempt == 2
        assert came_back_after >= delay - _TIMER_SLACK, f"redelivered after {came_back_after:.3f} s"

    # Not tied to at-least-once: an at-most-once profile that claims dead letters (Redis
    # Pub/Sub keeps them in a stream) must keep them just the same.
    @requires("dead_letter")
    async def test_dead_letter_reaches_dlq(self, ctx: CaseContext) -> None:
        broker, reader = await ctx.open(), await ctx.open()
        sent = Message(
            body=b"\x89PNG\r\n\x1a\n\x00 poison \xff",
            key="poison",
            headers={"tenant": "acme"},
            correlation_id="corr-9",
        )
        fence = Message(body=b"fence")
        group = ctx.default_group()
        async with broker.subscribe(ctx.topic, group=group) as sub:
            await broker.publish(ctx.topic, sent)
            delivery = await next_delivery(sub, ctx.scale.timeout)
            await delivery.dead_letter("bad-input", headers={h.DLQ_DETAIL: "field x"})
            assert delivery.settled == "dead-letter"
            await broker.publish(ctx.topic, fence)
            after = await collect_until(sub, lambda got: fence.id in ids(got), ctx.scale.timeout)
            assert ids(after) == [fence.id], "a dead-lettered message was redelivered"
        dlq = dead_letter_topic(ctx.topic)
        async with reader.subscribe(dlq, group=DEAD_LETTER_GROUP) as dead_sub:
            dead = await next_delivery(dead_sub, ctx.scale.timeout)
            await dead.ack()
        got = dead.message
        assert got.body == sent.body, "dead letter body is not byte-identical"
        assert got.id == sent.id
        assert got.key == sent.key
        assert got.correlation_id == sent.correlation_id
        assert got.headers.get("tenant") == "acme"
        assert got.headers.get(h.DLQ_REASON) == "bad-input"
        assert got.headers.get(h.DLQ_DETAIL) == "field x"
        assert got.headers.get(h.DLQ_ORIGINAL_TOPIC) == ctx.topic
        assert got.headers.get(h.DLQ_ATTEMPTS) == "1"

    @requires("dead_letter", "consumer_groups", AT_LEAST_ONCE)
    async def test_each_group_dead_letters_its_own_copy(self, ctx: CaseContext) -> None:
        # Two groups give up on the same message: the DLQ must keep both dead letters (a
        # broker deduplicating on the message id would silently keep only one).
        broker, reader = await ctx.open(), await ctx.open()
        sent = Message(body=b"poison for everyone")
        first, second = ctx.group(), ctx.group()
        async with (
            broker.subscribe(ctx.topic, group=first) as sub_a,
            broker.subscribe(ctx.topic, group=second) as sub_b,
        ):
            await broker.publish(ctx.topic, sent)
            for sub in (sub_a, sub_b):
                delivery = await next_delivery(sub, ctx.scale.timeout)
                await delivery.dead_letter("bad-input")
        async with reader.subscribe(dead_letter_topic(ctx.topic), group=DEAD_LETTER_GROUP) as dlq:
            dead = await collect(dlq, 2, ctx.scale.timeout)
        assert [d.message.id for d in dead] == [sent.id, sent.id]
        assert sorted(d.message.headers.get(h.DLQ_GROUP, "") for d in dead) == sorted(
            [first, second]
        )
