"""Testing layer: conformance cases for closing publishers and subscribers mid-flight."""

from __future__ import annotations

import asyncio

from eventwire.core.errors import ClosedError
from eventwire.core.message import Delivery, Message
from eventwire.testing.conformance.context import RESTART, CaseContext, CaseFixtures, requires
from eventwire.testing.conformance.helpers import (
    Collector,
    collect,
    ids,
    make_messages,
)


class LifecycleCases(CaseFixtures):
    """``aclose()`` flushes publishers and ends subscriptions without errors or hangs."""

    async def test_publisher_close_flushes(self, ctx: CaseContext) -> None:
        consumer, publisher = await ctx.open(), await ctx.open()
        messages = make_messages(ctx.scale.messages)
        confirmed: list[Message] = []

        async def send(message: Message) -> None:
            try:
                await publisher.publish(ctx.topic, message)
            except ClosedError:
                return  # refused by the close: reported as not sent, so not expected
            confirmed.append(message)

        async with consumer.subscribe(ctx.topic, group=ctx.default_group()) as sub:
            await publisher.publish(ctx.topic, messages[0])
            confirmed.append(messages[0])
            tasks = [asyncio.create_task(send(m)) for m in messages[1:]]
            await asyncio.sleep(0)  # let the sends start, so close meets them in flight
            async with asyncio.timeout(ctx.scale.timeout):
                await publisher.aclose()
                await asyncio.gather(*tasks)
            got = await collect(sub, len(confirmed), ctx.scale.timeout)
        assert set(ids(confirmed)) <= set(ids(got)), "a confirmed publish was lost on close"

    @requires("persistent", "consumer_groups")
    async def test_publisher_close_flushes_to_new_client(self, ctx: CaseContext) -> None:
        group = ctx.group()
        creator = await ctx.open()
        async with creator.subscribe(ctx.topic, group=group):
            pass  # the group now exists and keeps what is published to it
        publisher = await ctx.open()
        messages = make_messages(ctx.scale.messages)
        await publisher.publish(ctx.topic, *messages)
        await publisher.aclose()
        reader = await ctx.open()
        async with reader.subscribe(ctx.topic, group=group) as sub:
            got = await collect(sub, len(messages), ctx.scale.timeout)
        assert sorted(ids(got)) == sorted(ids(messages))

    @requires("survives_restart", "persistent", "consumer_groups", RESTART)
    async def test_confirmed_publishes_survive_restart(self, ctx: CaseContext) -> None:
        # Embedded brokers "restart" when every client is gone and the store is reopened;
        # network brokers when the harness restarts its private server.
        group = ctx.group()
        async with (await ctx.open()).subscribe(ctx.topic, group=group):
            pass  # the group exists and keeps what is published to it
        publisher = await ctx.open()
        messages = make_messages(ctx.scale.messages)
        await publisher.publish(ctx.topic, *messages)
        await publisher.aclose()
        await ctx.harness.restart_broker()
        reader = await ctx.open()
        async with reader.subscribe(ctx.topic, group=group) as sub:
            got = await collect(sub, len(messages), ctx.scale.timeout)
        assert sorted(ids(got)) == sorted(ids(messages)), "a confirmed publish was lost"

    async def test_concurrent_close(self, ctx: CaseContext) -> None:
        broker, publisher = await ctx.open(), await ctx.open()
        handler_started = asyncio.Event()
        release = asyncio.Event()
        held: list[Delivery] = []

        async def block(delivery: Delivery) -> None:
            held.append(delivery)
            handler_started.set()
            await release.wait()  # a handler still busy while the broker closes

        busy_cm = broker.subscribe(ctx.topic, group=ctx.default_group())
        idle_cm = broker.subscribe(ctx.new_topic("idle"), group=ctx.default_group())
        busy_sub = await busy_cm.__aenter__()
        idle_sub = await idle_cm.__aenter__()
        busy = Collector(busy_sub, handler=block, settle="none", name="busy")
        idle = Collector(idle_sub, name="idle")
        try:
            await publisher.publish(ctx.topic, *make_messages(5))
            async with asyncio.timeout(ctx.scale.timeout):
                await handler_started.wait()
                await broker.aclose()  # must not wait for the blocked handler
            await idle.wait_ended(ctx.scale.timeout)
            release.set()
            await busy.wait_ended(ctx.scale.timeout)
            await held[0].ack()  # settling after close: no exception
            async with asyncio.timeout(ctx.scale.timeout):
                await busy_cm.__aexit__(None, None, None)
                await idle_cm.__aexit__(None, None, None)
                await broker.aclose()  # idempotent
        finally:
            release.set()
            await busy.stop()
            await idle.stop()

    async def test_subscription_ends_on_close_while_waiting(self, ctx: CaseContext) -> None:
        broker = await ctx.open()
        async with broker.subscribe(ctx.topic, group=ctx.default_group()) as sub:

            async def next_or_end() -> Delivery | None:
                try:
                    return await anext(sub)
                except StopAsyncIteration:
                    return None

            waiting = asyncio.create_task(next_or_end())
            await asyncio.sleep(0)  # the iterator is now parked waiting for a message
            async with asyncio.timeout(ctx.scale.timeout):
                await broker.aclose()
                got = await waiting
            assert got is None, "a closed subscription must end, not deliver"
