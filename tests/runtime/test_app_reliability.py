"""App on the real memory broker: ack modes, decode failures, retries, DLQ, idempotency."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pydantic
import pytest

from eventwire.core import headers as h
from eventwire.core.capabilities import Support
from eventwire.core.errors import PermanentError
from eventwire.core.message import Message
from eventwire.reliability.idempotency import SQLiteIdempotencyStore
from eventwire.reliability.retry import RetryPolicy
from eventwire.runtime.app import App
from eventwire.runtime.context import Context
from eventwire.runtime.handling import Timing
from eventwire.runtime.subscriber import AckMode

from .helpers import memory_url, read_dlq, running, wait_until

FAST = RetryPolicy(max_attempts=3, initial_delay=0.005, max_delay=0.02, jitter=0.1)


class Order(pydantic.BaseModel):
    order_id: str


@pytest.mark.parametrize("ack", ["after", "before"])
async def test_ack_mode_decides_what_an_interrupted_handler_leaves(ack: AckMode) -> None:
    """ack=after: a handler cut off by shutdown leaves its message for the next run;
    ack=before: the message was acked before the handler ran, so it is gone (at-most-once)."""
    url = memory_url()
    first = App(url, shutdown_timeout=0.05)
    entered = asyncio.Event()

    @first.subscriber("jobs", group="workers", ack=ack)
    async def stuck(order: Order) -> None:
        entered.set()
        await asyncio.Event().wait()

    second = App(url)
    again: list[tuple[str, int]] = []

    @second.subscriber("jobs", group="workers")
    async def finish(order: Order, ctx: Context) -> None:
        again.append((order.order_id, ctx.attempt))

    async with first, second:
        async with running(first):
            await first.publish("jobs", Order(order_id="a"))
            await asyncio.wait_for(entered.wait(), 10)
        await second.publish("jobs", Order(order_id="marker"))
        async with running(second):
            await wait_until(lambda: ("marker", 1) in again)
    if ack == "after":
        assert again == [("a", 2), ("marker", 1)]
    else:
        assert again == [("marker", 1)]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"order_id": ', "decode-error"),
        (b"\xff\xfe", "decode-error"),
        (b'{"id": 1}', "validation-error"),
    ],
)
async def test_undecodable_goes_to_dlq_at_once_untouched(body: bytes, reason: str) -> None:
    app = App(memory_url())
    calls = 0

    @app.subscriber("orders", group="billing", retry=FAST)
    async def handle(order: Order) -> None:
        nonlocal calls
        calls += 1

    async with app, running(app):
        sent = Message(body=body, content_type="application/json")
        await app.publish("orders", sent)
        [dead] = await read_dlq(app.broker, "orders", 1)
    assert calls == 0
    assert dead.body == body
    assert dead.id == sent.id
    assert dead.headers[h.DLQ_REASON] == reason
    assert dead.headers[h.DLQ_ATTEMPTS] == "1"
    assert dead.headers[h.DLQ_DETAIL]
    assert app.stats.retried == 0
    assert app.stats.dead_lettered == 1


async def test_transient_failures_retry_through_the_broker() -> None:
    app = App(memory_url())
    attempts: list[int] = []

    @app.subscriber(
        "orders", group="billing", retry=RetryPolicy(max_attempts=5, initial_delay=0.01)
    )
    async def flaky(order: Order, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError("downstream busy")

    async with app, running(app):
        await app.publish("orders", Order(order_id="1"))
        await wait_until(lambda: app.stats.processed == 1)
    assert attempts == [1, 2, 3]  # attempt comes from the broker's redelivery count
    assert (app.stats.retried, app.stats.failed, app.stats.dead_lettered) == (2, 2, 0)


async def test_without_delayed_redelivery_retries_happen_in_place() -> None:
    slept: list[float] = []

    async def recording_sleep(seconds: float) -> None:
        slept.append(seconds)

    app = App(memory_url(), timing=Timing(sleep=recording_sleep))
    attempts: list[int] = []

    @app.subscriber("orders", group="billing", retry=FAST)
    async def flaky(order: Order, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError("downstream busy")

    async with app:
        broker = app.broker
        caps = replace(broker.profile.capabilities, delayed_redelivery=Support.NONE)
        broker._profile = replace(broker.profile, capabilities=caps)  # type: ignore[attr-defined]  # a private field: the test takes delayed redelivery away from this broker
        async with running(app):
            sent = await app.publish("orders", Order(order_id="1"))
            await wait_until(lambda: app.stats.processed == 1)
    assert attempts == [1, 2, 3]
    assert len(slept) == 2  # backed off inside the lane instead of nack(delay=...)
    assert app.stats.retried == 2
    assert sent.id


async def test_exhausted_and_permanent_failures_are_dead_lettered_with_headers() -> None:
    app = App(memory_url())
    calls: Counter[str] = Counter()

    @app.subscriber("orders", group="billing", retry=FAST)
    async def handle(order: Order) -> None:
        calls[order.order_id] += 1
        if order.order_id == "permanent":
            raise PermanentError("card declined")
        raise ValueError(f"cannot process {order.order_id}")

    async with app, running(app):
        bad = await app.publish("orders", Order(order_id="transient"))
        perm = await app.publish("orders", Order(order_id="permanent"))
        dead = {m.id: m for m in await read_dlq(app.broker, "orders", 2)}
    assert calls == {"transient": 3, "permanent": 1}
    exhausted, declined = dead[bad.id], dead[perm.id]
    assert exhausted.body == bad.body
    assert declined.body == perm.body
    eh = exhausted.headers
    assert eh[h.DLQ_REASON] == "max-attempts"
    assert eh[h.DLQ_ATTEMPTS] == "3"
    assert eh[h.DLQ_EXCEPTION_TYPE] == "ValueError"
    assert eh[h.DLQ_EXCEPTION_MESSAGE] == "cannot process transient"
    assert eh[h.DLQ_ORIGINAL_TOPIC] == "orders"
    assert eh[h.DLQ_GROUP] == "billing"
    assert eh[h.DLQ_FIRST_FAILURE] < eh[h.DLQ_LAST_FAILURE]  # ISO strings sort by time
    dh = declined.headers
    assert dh[h.DLQ_REASON] == "permanent-error"
    assert dh[h.DLQ_ATTEMPTS] == "1"
    assert dh[h.DLQ_EXCEPTION_TYPE] == "eventwire.core.errors.PermanentError"
    assert app.stats.dead_lettered == 2


async def test_idempotent_handler_runs_once_per_message_id() -> None:
    app = App(memory_url())
    calls: Counter[str] = Counter()

    @app.subscriber("orders", group="billing", idempotent=True)
    async def handle(message: Message) -> None:
        calls[message.id] += 1

    async with app, running(app):
        twice = Message(body=b"x", id="same-id")
        await app.publish("orders", twice)
        await wait_until(lambda: app.stats.processed == 1)
        await app.publish("orders", twice)
        await app.publish("orders", Message(body=b"y", id="other-id"))
        await wait_until(lambda: app.stats.processed == 2)
        await wait_until(lambda: app.stats.duplicates_suppressed == 1)
    assert calls == {"same-id": 1, "other-id": 1}


async def test_sqlite_idempotency_store_spans_app_instances(tmp_path: Path) -> None:
    url = memory_url()
    calls: list[str] = []
    apps = [
        App(url, idempotency_store=SQLiteIdempotencyStore(tmp_path / "idem.db")) for _ in range(2)
    ]
    for app in apps:

        @app.subscriber("orders", group="billing", idempotent=True)
        async def handle(message: Message) -> None:
            calls.append(message.id)

    one, two = apps
    async with one, two:
        async with running(one):
            await one.publish("orders", Message(body=b"x", id="m1"))
            await wait_until(lambda: one.stats.processed == 1)
        async with running(two):  # a restarted worker gets the same id again
            await two.publish("orders", Message(body=b"x", id="m1"))
            await wait_until(lambda: two.stats.duplicates_suppressed == 1)
    assert calls == ["m1"]
