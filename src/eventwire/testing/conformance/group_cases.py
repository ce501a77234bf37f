"""Testing layer: conformance cases for consumer groups, broadcast, persistence and replay."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import suppress

from eventwire.core.message import Delivery
from eventwire.testing.conformance.context import CaseContext, CaseFixtures, requires
from eventwire.testing.conformance.helpers import (
    Collector,
    collect,
    ids,
    make_messages,
    union_ids,
)


def assert_exactly_once(got: list[str], expected: list[str], what: str) -> None:
    dupes = [i for i, n in Counter(got).items() if n > 1]
    assert not dupes, f"{what}: {len(dupes)} messages delivered twice without any failure"
    assert sorted(got) == sorted(expected), f"{what}: lost {len(set(expected) - set(got))}"


class GroupCases(CaseFixtures):
    """Competing consumers, independent groups, broadcast, persistence and replay."""

    @requires("consumer_groups")
    async def test_competing_consumers_share_load(self, ctx: CaseContext) -> None:
        a, b, publisher = await ctx.open(), await ctx.open(), await ctx.open()
        group = ctx.group()
        messages = make_messages(max(ctx.scale.messages, 100))

        started = {"member a": asyncio.Event(), "member b": asyncio.Event()}

        def hold_until_both_busy(me: str, other: str) -> Callable[[Delivery], Awaitable[None]]:
            # A member holds its first delivery until the other member has one too: a group
            # that hands everything to a busy member (prefetch full) instead of sharing fails.
            async def handle(_: Delivery) -> None:
                started[me].set()
                with suppress(TimeoutError):
                    async with asyncio.timeout(ctx.scale.timeout / 2):
                        await started[other].wait()

            return handle

        async with (
            a.subscribe(ctx.topic, group=group, prefetch=10) as sub_a,
            b.subscribe(ctx.topic, group=group, prefetch=10) as sub_b,
        ):
            first = Collector(
                sub_a, handler=hold_until_both_busy("member a", "member b"), name="member a"
            )
            second = Collector(
                sub_b, handler=hold_until_both_busy("member b", "member a"), name="member b"
            )
            for start in range(0, len(messages), 10):
                await publisher.publish(ctx.topic, *messages[start : start + 10])
            try:
                await first.wait_until_union(second, ids(messages), ctx.scale.timeout)
            finally:
                await first.stop()
                await second.stop()
        assert_exactly_once(union_ids(first, second), ids(messages), "group")
        assert first.acked_ids(), "member a got no share of the load"
        assert second.acked_ids(), "member b got no share of the load"

    @requires("consumer_groups")
    async def test_each_group_gets_every_message(self, ctx: CaseContext) -> None:
        broker, publisher = await ctx.open(), await ctx.open()
        messages = make_messages(ctx.scale.messages)
        async with (
            broker.subscribe(ctx.topic, group=ctx.group("one")) as one,
            broker.subscribe(ctx.topic, group=ctx.group("two")) as two,
        ):
            await publisher.publish(ctx.topic, *messages)
            got_one, got_two = await asyncio.gather(
                collect(one, len(messages), ctx.scale.timeout),
                collect(two, len(messages), ctx.scale.timeout),
            )
        assert_exactly_once(ids(got_one), ids(messages), "group one")
        assert_exactly_once(ids(got_two), ids(messages), "group two")

    @requires("broadcast")
    async def test_broadcast_without_group(self, ctx: CaseContext) -> None:
        a, b, publisher = await ctx.open(), await ctx.open(), await ctx.open()
        messages = make_messages(ctx.scale.messages)
        async with (
            a.subscribe(ctx.topic) as sub_a,
            b.subscribe(ctx.topic) as sub_b,
            a.subscribe(ctx.topic) as sub_a2,
        ):
            await publisher.publish(ctx.topic, *messages)
            results = await asyncio.gather(
                collect(sub_a, len(messages), ctx.scale.timeout),
                collect(sub_b, len(messages), ctx.scale.timeout),
                collect(sub_a2, len(messages), ctx.scale.timeout),
            )
        for n, got in enumerate(results):
            assert_exactly_once(ids(got), ids(messages), f"broadcast subscriber {n}")
            assert all(d.group is None for d in got)

    @requires("persistent", "consumer_groups")
    async def test_continue_after_subscriber_close(self, ctx: CaseContext) -> None:
        publisher = await ctx.open()
        group = ctx.group()
        messages = make_messages(ctx.scale.messages)
        half = len(messages) // 2
        first = await ctx.open()
        async with first.subscribe(ctx.topic, group=group) as sub:
            await publisher.publish(ctx.topic, *messages[:half])
            got_first = await collect(sub, half, ctx.scale.timeout)
        await first.aclose()
        # Nobody is subscribed now: the group must keep these for its next member.
        await publisher.publish(ctx.topic, *messages[half:])
        second = await ctx.open()
        async with second.subscribe(ctx.topic, group=group) as sub:
            got_second = await collect(sub, len(messages) - half, ctx.scale.timeout)
        assert_exactly_once(ids(got_first) + ids(got_second), ids(messages), "group")

    @requires("replay", "consumer_groups")
    async def test_new_group_reads_history(self, ctx: CaseContext) -> None:
        publisher, consumer = await ctx.open(), await ctx.open()
        messages = make_messages(ctx.scale.messages)
        await publisher.publish(ctx.topic, *messages)
        async with consumer.subscribe(ctx.topic, group=ctx.group("late")) as sub:
            got = await collect(sub, len(messages), ctx.scale.timeout)
        assert_exactly_once(ids(got), ids(messages), "new group")
