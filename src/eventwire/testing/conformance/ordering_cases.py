"""Testing layer: conformance cases for per-key order and exclusive in-flight delivery."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from eventwire.core.message import Delivery, Message
from eventwire.testing.conformance.context import CaseContext, CaseFixtures, requires
from eventwire.testing.conformance.helpers import (
    Collector,
    collect,
    expect_nothing,
    next_delivery,
    union_ids,
)


def keyed_messages(keys: int, per_key: int) -> list[Message]:
    """Messages interleaved across ``keys`` keys; body "key:seq"."""
    return [
        Message(body=f"key-{k}:{seq}".encode(), key=f"key-{k}")
        for seq in range(per_key)
        for k in range(keys)
    ]


def assert_key_order(seen: list[Message], what: str) -> None:
    """Within each key, sequence numbers appear in publish order (duplicates not allowed)."""
    by_key: defaultdict[str, list[int]] = defaultdict(list)
    for message in seen:
        assert message.key is not None
        by_key[message.key].append(int(message.body.split(b":")[1]))
    for key, seqs in by_key.items():
        assert seqs == sorted(seqs), f"{what}: key {key} out of order: {seqs[:20]}..."
        assert len(set(seqs)) == len(seqs), f"{what}: key {key} delivered twice"


class OrderingCases(CaseFixtures):
    """Order within a key, for one subscriber and across a group; prefetch=1 exclusivity."""

    @requires("exclusive_in_flight")
    async def test_no_next_message_before_ack(self, ctx: CaseContext) -> None:
        broker = await ctx.open()
        first, second = Message(body=b"1"), Message(body=b"2")
        async with broker.subscribe(ctx.topic, group=ctx.default_group(), prefetch=1) as sub:
            await broker.publish(ctx.topic, first, second)
            got = await next_delivery(sub, ctx.scale.timeout)
            # An absence can only be watched for a while: nothing may come while one is open.
            await expect_nothing(sub, ctx.scale.quiet)
            await got.ack()
            following = await next_delivery(sub, ctx.scale.timeout)
            await following.ack()
        assert {got.message.id, following.message.id} == {first.id, second.id}

    @requires("ordered_per_key")
    async def test_order_per_key(self, ctx: CaseContext) -> None:
        publisher, consumer = await ctx.open(), await ctx.open()
        scale = ctx.scale
        batch = keyed_messages(scale.keys, scale.per_key)
        per_key_tasks = keyed_messages(scale.keys, scale.per_key)

        async def publish_key(key: str) -> None:
            for message in per_key_tasks:
                if message.key == key:
                    await publisher.publish(ctx.topic, message)

        async with consumer.subscribe(ctx.topic, group=ctx.default_group()) as sub:
            await publisher.publish(ctx.topic, *batch)  # one call: order within the call
            keys = {m.key for m in per_key_tasks if m.key is not None}
            await asyncio.gather(*(publish_key(k) for k in sorted(keys)))
            got = await collect(sub, len(batch) * 2, scale.timeout)
        in_batch = {m.id for m in batch}
        assert_key_order([d.message for d in got if d.message.id in in_batch], "one call")
        assert_key_order([d.message for d in got if d.message.id not in in_batch], "per key")

    @requires("ordered_per_key", "ordered_across_members", "consumer_groups")
    async def test_order_per_key_across_members(self, ctx: CaseContext) -> None:
        a, b, publisher = await ctx.open(), await ctx.open(), await ctx.open()
        group = ctx.group()
        messages = keyed_messages(ctx.scale.keys, ctx.scale.per_key)
        seen: list[Message] = []  # global order of hand-over, across both members

        async def work(delivery: Delivery) -> None:
            seen.append(delivery.message)
            await asyncio.sleep(0)  # interleave members, as real handlers would

        async with (
            a.subscribe(ctx.topic, group=group, prefetch=4) as sub_a,
            b.subscribe(ctx.topic, group=group, prefetch=4) as sub_b,
        ):
            first = Collector(sub_a, handler=work, name="member a")
            second = Collector(sub_b, handler=work, name="member b")
            for start in range(0, len(messages), ctx.scale.keys):
                await publisher.publish(ctx.topic, *messages[start : start + ctx.scale.keys])
            try:
                await first.wait_until_union(second, [m.id for m in messages], ctx.scale.timeout)
            finally:
                await first.stop()
                await second.stop()
        assert sorted(union_ids(first, second)) == sorted(m.id for m in messages)
        assert_key_order(seen, "across members")
