"""Testing layer: conformance cases for connection cuts, half-open links and broker restarts.

Generic over any harness with a network ``upstream`` (a ``FaultProxy`` is put in front of it
through ``url_via``) or ``supports_restart``. Every case measures how long consumption took
to resume; the issue's bounds are 10 s after the connection is back and 15 s to notice a
half-open (blackholed) connection. At-least-once profiles must lose nothing that a
``publish`` confirmed (duplicates are allowed and counted); at-most-once profiles only have
to come back.
"""

from __future__ import annotations

import asyncio

import pytest

from eventwire.core.capabilities import Guarantee
from eventwire.core.contract import Broker
from eventwire.core.errors import BrokerError
from eventwire.core.message import Message
from eventwire.testing.conformance.context import (
    PROXY,
    RESTART,
    CaseContext,
    CaseFixtures,
    requires,
)
from eventwire.testing.conformance.helpers import Collector, ids, make_messages
from eventwire.testing.fault_proxy import FaultProxy
from eventwire.testing.helpers import wait_until

RESUME_WITHIN = 10.0  # seconds from "connection possible again" to the next delivery
NOTICE_HALF_OPEN_WITHIN = 15.0


def _at_least_once(ctx: CaseContext) -> bool:
    return ctx.caps.guarantee is Guarantee.AT_LEAST_ONCE


async def _resumes(
    ctx: CaseContext, publisher: Broker, seen: Collector, label: str, within: float
) -> float:
    """Publish a probe every 0.2 s until ``seen`` gets one; seconds it took (fails > within)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    probes: set[str] = set()
    n = 0
    while loop.time() - started < within:
        probe = Message(body=f"{label}-probe-{n}".encode())
        n += 1
        try:
            async with asyncio.timeout(max(0.2, within - (loop.time() - started))):
                await publisher.publish(ctx.topic, probe)
            probes.add(probe.id)
        except (BrokerError, TimeoutError):
            pass  # the publisher is still reconnecting; try again
        if probes & {d.message.id for d in seen.received}:
            return loop.time() - started
        try:
            await wait_until(
                lambda: bool(probes & {d.message.id for d in seen.received}), 0.2, what="probe"
            )
            return loop.time() - started
        except AssertionError:
            continue
    seen._check()
    raise AssertionError(
        f"{label}: no delivery within {within:.1f} s of the connection coming back"
    )


class ReconnectCases(CaseFixtures):
    """Cut every connection twice, blackhole one, restart the broker: delivery goes on."""

    @pytest.mark.reconnect
    @requires("reconnects", PROXY)
    async def test_reconnect_after_connections_cut(self, ctx: CaseContext) -> None:
        upstream = ctx.harness.upstream
        assert upstream is not None
        async with FaultProxy(*upstream) as proxy:
            broker = await ctx.open(ctx.harness.url_via(proxy.host, proxy.port))
            async with broker.subscribe(ctx.topic, group=ctx.default_group()) as sub:
                seen = Collector(sub, name="through proxy")
                try:
                    messages = make_messages(ctx.scale.messages)
                    thirds = [messages[i::3] for i in range(3)]
                    confirmed: list[Message] = []
                    for n, part in enumerate(thirds):
                        if n:  # cut before the 2nd and 3rd part: every connection, twice
                            await proxy.cut()
                            took = await _resumes(ctx, broker, seen, f"cut{n}", RESUME_WITHIN)
                            assert took <= RESUME_WITHIN
                        for start in range(0, len(part), 20):
                            batch = part[start : start + 20]
                            await broker.publish(ctx.topic, *batch)
                            confirmed.extend(batch)
                    assert proxy.cuts == 2
                    if _at_least_once(ctx):
                        await seen.wait_for_ids(ids(confirmed), ctx.scale.timeout)
                    else:
                        # At-most-once: what was sent after the last cut arrives.
                        await seen.wait_for_ids(ids(thirds[2]), ctx.scale.timeout)
                finally:
                    await seen.stop()

    @pytest.mark.reconnect
    @requires("reconnects", PROXY)
    async def test_half_open_connection_noticed(self, ctx: CaseContext) -> None:
        upstream = ctx.harness.upstream
        assert upstream is not None
        direct = await ctx.open()  # publishes around the proxy: only the consumer is cut off
        async with FaultProxy(*upstream) as proxy:
            broker = await ctx.open(ctx.harness.url_via(proxy.host, proxy.port))
            async with broker.subscribe(ctx.topic, group=ctx.default_group()) as sub:
                seen = Collector(sub, name="half-open consumer")
                try:
                    took = await _resumes(ctx, direct, seen, "before", RESUME_WITHIN)
                    proxy.blackhole()  # open sockets go silent; new connections get through
                    took = await _resumes(
                        ctx, direct, seen, "blackhole", NOTICE_HALF_OPEN_WITHIN + RESUME_WITHIN
                    )
                    assert took <= NOTICE_HALF_OPEN_WITHIN, (
                        f"half-open connection noticed only after {took:.1f} s"
                    )
                    # The proxied client publishes again too (its publish path recovered).
                    fence = Message(body=b"fence")
                    async with asyncio.timeout(NOTICE_HALF_OPEN_WITHIN + RESUME_WITHIN):
                        await broker.publish(ctx.topic, fence)
                    await seen.wait_for_ids([fence.id], ctx.scale.timeout)
                finally:
                    await seen.stop()

    @pytest.mark.reconnect
    @requires("reconnects", RESTART)
    async def test_reconnect_after_broker_restart(self, ctx: CaseContext) -> None:
        broker, publisher = await ctx.open(), await ctx.open()
        group = ctx.default_group()
        before = make_messages(max(ctx.scale.messages // 2, 10), prefix="before")
        after = make_messages(max(ctx.scale.messages // 2, 10), prefix="after")
        async with broker.subscribe(ctx.topic, group=group) as sub:
            seen = Collector(sub, name="across restart")
            try:
                await publisher.publish(ctx.topic, *before)
                await seen.wait_for_ids(ids(before), ctx.scale.timeout)
                await ctx.harness.restart_broker()
                took = await _resumes(ctx, publisher, seen, "restart", RESUME_WITHIN)
                assert took <= RESUME_WITHIN
                await publisher.publish(ctx.topic, *after)
                await seen.wait_for_ids(ids(after), ctx.scale.timeout)
            finally:
                await seen.stop()

    @pytest.mark.reconnect
    @requires("reconnects", "persistent", "consumer_groups", RESTART)
    async def test_group_survives_restart_with_pending_work(self, ctx: CaseContext) -> None:
        # Published while nobody reads, then the broker restarts: where the profile claims
        # survives_restart the backlog must still be there; otherwise only new work must flow.
        publisher = await ctx.open()
        group = ctx.group()
        async with (await ctx.open()).subscribe(ctx.topic, group=group):
            pass  # the group exists now
        backlog = make_messages(max(ctx.scale.messages // 4, 10), prefix="backlog")
        await publisher.publish(ctx.topic, *backlog)
        await ctx.harness.restart_broker()
        fresh = make_messages(10, prefix="fresh")
        consumer = await ctx.open()
        async with consumer.subscribe(ctx.topic, group=group) as sub:
            seen = Collector(sub, name="after restart")
            try:
                async with asyncio.timeout(ctx.scale.timeout):
                    await publisher.publish(ctx.topic, *fresh)
                wanted = ids(fresh) + (ids(backlog) if ctx.caps.survives_restart else [])
                await seen.wait_for_ids(wanted, ctx.scale.timeout)
            finally:
                await seen.stop()
