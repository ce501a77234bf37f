"""What no message can do to a consumer: kill its task or worker, pass an unreadable content
type to the handler, or hang it past its timeout; and dead consumers come back, counted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pydantic
import pytest

from eventwire.core import headers as h
from eventwire.core.contract import Broker
from eventwire.core.message import Delivery, Message
from eventwire.reliability.retry import RetryPolicy
from eventwire.runtime.app import App
from eventwire.runtime.context import Context
from eventwire.runtime.handling import HandlerTimeoutError, Timing
from eventwire.serialization import codec

from .helpers import memory_url, read_dlq, running, wait_until

FAST = RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.005, jitter=0.0)


class Order(pydantic.BaseModel):
    order_id: str


class Meltdown(BaseException):
    """Not an ``Exception``: slips past every ``except Exception`` on the way out."""


async def test_unsupported_content_type_is_dead_lettered_with_its_bytes() -> None:
    app = App(memory_url())
    seen: list[str] = []

    @app.subscriber("orders", group="g")
    async def handle(order: Order) -> None:
        seen.append(order.order_id)

    pickled = b'\x80\x04\x95{"order_id": "p"}'
    async with app, running(app):
        await app.broker.publish(
            "orders",
            Message(body=pickled, content_type="application/x-pickle"),
            Message(body=b'{"order_id": "p"}', content_type="application/x-pickle"),
            Message(body=b'{"order_id": "1"}', content_type="application/json; charset=utf-8"),
            Message(body=b'{"order_id": "2"}'),  # no type named: read as JSON
            Message(body=b'{"order_id": "3"}', content_type="application/vnd.order+json"),
        )
        await wait_until(lambda: len(seen) == 3)
        dead = await read_dlq(app.broker, "orders", 2)
    assert seen == ["1", "2", "3"]
    assert [d.body for d in dead] == [pickled, b'{"order_id": "p"}']
    assert {d.headers[h.DLQ_REASON] for d in dead} == {"unsupported content type"}
    assert "application/x-pickle" in dead[0].headers[h.DLQ_DETAIL]
    assert app.stats.dead_lettered == 2


async def test_a_registered_codec_reads_its_content_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "_CODECS", {})
    codec.register_content_type("application/x-reversed-json", lambda b: json.loads(b[::-1]))
    app = App(memory_url())
    seen: list[str] = []

    @app.subscriber("orders", group="g")
    async def handle(order: Order) -> None:
        seen.append(order.order_id)

    body = b'{"order_id": "r"}'[::-1]
    async with app, running(app):
        await app.broker.publish(
            "orders", Message(body=body, content_type="Application/X-Reversed-JSON; v=1")
        )
        await wait_until(lambda: seen == ["r"])


async def test_a_handler_raising_a_base_exception_does_not_erode_concurrency() -> None:
    """Each such call kills the worker running it; the worker is replaced (counted) and the
    message comes back, so the good messages behind it are all handled."""
    app = App(memory_url())
    seen: list[str] = []

    @app.subscriber("orders", group="g", concurrency=2)
    async def handle(order: Order, ctx: Context) -> None:
        if order.order_id == "bad" and ctx.attempt == 1:
            raise Meltdown("not an Exception")
        seen.append(order.order_id)

    async with app, running(app):
        await app.publish_batch("orders", [{"order_id": "bad"}] * 3)
        await app.publish_batch("orders", [{"order_id": str(i)} for i in range(20)])
        await wait_until(lambda: len(seen) == 23, deadline=30)
    assert sorted(seen) == sorted(["bad"] * 3 + [str(i) for i in range(20)])
    assert app.stats.consumer_restarts == 3
    assert app.stats.processed == 23


async def test_a_cancelled_error_from_inside_a_handler_is_a_retried_failure() -> None:
    app = App(memory_url())
    attempts: list[int] = []

    @app.subscriber("orders", group="g", retry=FAST)
    async def handle(order: Order, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            cancelled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            cancelled.cancel()
            await cancelled  # raises CancelledError, though nobody cancelled this task

    async with app, running(app):
        await app.publish("orders", {"order_id": "1"})
        await wait_until(lambda: app.stats.processed == 1)
    assert attempts == [1, 2]
    assert (app.stats.failed, app.stats.retried) == (1, 1)


async def test_a_handler_past_its_timeout_is_cancelled_and_retried() -> None:
    app = App(memory_url())
    calls: list[int] = []
    cancelled: list[int] = []

    @app.subscriber("orders", group="g", retry=FAST, timeout=0.05)
    async def handle(order: Order, ctx: Context) -> None:
        calls.append(ctx.attempt)
        if order.order_id == "hangs" or ctx.attempt == 1:
            try:
                await asyncio.Event().wait()  # hangs
            except asyncio.CancelledError:
                cancelled.append(ctx.attempt)
                raise

    async with app, running(app):
        await app.publish("orders", {"order_id": "slow-once"})
        await wait_until(lambda: app.stats.processed == 1)
        await app.publish("orders", {"order_id": "hangs"})
        (dead,) = await read_dlq(app.broker, "orders", 1)
    assert calls == [1, 2, 1, 2, 3]
    assert cancelled == [1, 1, 2, 3]
    assert dead.headers[h.DLQ_REASON] == "max-attempts"
    assert dead.headers[h.DLQ_EXCEPTION_TYPE].endswith(HandlerTimeoutError.__name__)
    assert dead.headers[h.DLQ_EXCEPTION_MESSAGE].startswith("timeout:")
    assert app.stats.failed == 4


class DyingBroker:
    """Wraps a real broker; the first ``deaths`` subscriptions die with a ``BaseException``
    (a bug in an adapter, say): past the consumer's own ``except Exception``."""

    def __init__(self, inner: Broker, deaths: int) -> None:
        self.inner = inner
        self.deaths = deaths
        self.subscribes = 0
        self.died = asyncio.Event()
        self.resume = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def subscribe(
        self, topic: str, *, group: str | None = None, prefetch: int = 100
    ) -> AbstractAsyncContextManager[AsyncIterator[Delivery]]:
        self.subscribes += 1
        dies = self.subscribes <= self.deaths

        @asynccontextmanager
        async def session() -> AsyncIterator[AsyncIterator[Delivery]]:
            async with self.inner.subscribe(topic, group=group, prefetch=prefetch) as it:

                async def deliveries() -> AsyncIterator[Delivery]:
                    async for delivery in it:
                        if dies:
                            self.died.set()
                            raise Meltdown("adapter bug")
                        yield delivery

                yield deliveries()

        return session()


async def test_a_consumer_task_that_dies_is_restarted_counted_and_not_ready_meanwhile() -> None:
    gate = asyncio.Event()
    slept: list[float] = []

    async def held_sleep(seconds: float) -> None:
        slept.append(seconds)
        await gate.wait()  # the restart backoff lasts until the test has looked

    app = App(memory_url(), timing=Timing(sleep=held_sleep))
    seen: list[str] = []

    @app.subscriber("orders", group="g")
    async def handle(order: Order) -> None:
        seen.append(order.order_id)

    async with app:
        dying = DyingBroker(app.broker, deaths=1)
        app._broker = dying  # the app's own connection, wrapped
        async with running(app):
            await app.publish("orders", {"order_id": "1"})
            await dying.died.wait()
            await wait_until(lambda: slept != [])
            assert not app.ready  # down until it has subscribed again
            assert app.stats.consumer_restarts == 1
            gate.set()
            await wait_until(lambda: seen == ["1"])
            await wait_until(lambda: app.ready)
    assert dying.subscribes == 2
    text = app.metrics.exposition()[0].decode()
    assert 'eventwire_consumer_restarts_total{group="g",handler=' in text


async def test_concurrent_publishes_share_broker_calls_and_keep_their_own_errors() -> None:
    app = App(memory_url() + "?retention=100000")
    async with app:
        calls: list[int] = []
        real = app.broker.publish

        async def counting(topic: str, *messages: Message) -> None:
            calls.append(len(messages))
            await asyncio.sleep(0.001)  # a broker round trip
            await real(topic, *messages)

        app.broker.publish = counting  # type: ignore[method-assign]  # patched on the instance to count the app's publishes
        # Message 250 has a header no broker may carry: only its own caller may fail.
        results = await asyncio.gather(
            *(
                app.publish("t", {"n": i}, headers={"bad\nname": "x"} if i == 250 else None)
                for i in range(500)
            ),
            return_exceptions=True,
        )
    failures = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert failures == [250]
    assert all(isinstance(r, Message) for i, r in enumerate(results) if i != 250)
    assert len(calls) <= 4, f"concurrent publishes were not coalesced: {calls}"
    assert app.stats.published == 499
