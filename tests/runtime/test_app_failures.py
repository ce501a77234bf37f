"""App when the broker or the store fails: the consumer logs, keeps going and loses nothing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pydantic
import pytest

from eventwire.core import headers as h
from eventwire.core.contract import Broker
from eventwire.core.errors import BrokerError
from eventwire.core.message import Delivery, Message
from eventwire.reliability.idempotency import MemoryIdempotencyStore
from eventwire.reliability.retry import RetryPolicy
from eventwire.runtime import lanes
from eventwire.runtime.app import App
from eventwire.runtime.context import Context

from .helpers import memory_url, read_dlq, running, wait_until


class Order(pydantic.BaseModel):
    order_id: str


class Picky(pydantic.BaseModel):
    order_id: str

    @pydantic.model_validator(mode="wrap")
    @classmethod
    def explode(cls, value: Any, handler: Any) -> Any:
        if value == {"order_id": "bad"}:
            raise RecursionError("maximum recursion depth exceeded")
        return handler(value)


class FlakyBroker:
    """Wraps a real broker; the first ``failures`` subscriptions break after one delivery."""

    def __init__(self, inner: Broker, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.subscribes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def subscribe(
        self, topic: str, *, group: str | None = None, prefetch: int = 100
    ) -> AbstractAsyncContextManager[AsyncIterator[Delivery]]:
        self.subscribes += 1
        broken = self.subscribes <= self.failures

        @asynccontextmanager
        async def session() -> AsyncIterator[AsyncIterator[Delivery]]:
            async with self.inner.subscribe(topic, group=group, prefetch=prefetch) as it:

                async def deliveries() -> AsyncIterator[Delivery]:
                    async for delivery in it:
                        yield delivery
                        if broken:
                            raise BrokerError("connection reset by peer")

                yield deliveries()

        return session()


async def test_broker_failure_resubscribes_and_the_app_keeps_consuming(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App(memory_url())
    seen: list[str] = []

    @app.subscriber("orders", group="billing")
    async def handle(order: Order) -> None:
        seen.append(order.order_id)

    async with app:
        flaky = FlakyBroker(app.broker, failures=2)
        app._broker = flaky  # the app's own connection, wrapped
        with caplog.at_level(logging.ERROR, "eventwire"):
            async with running(app) as task:
                for i in range(5):
                    await app.publish("orders", Order(order_id=str(i)))
                await wait_until(lambda: len(set(seen)) == 5)
                assert not task.done()
                await wait_until(lambda: app.ready)
    assert set(seen) == {str(i) for i in range(5)}
    assert flaky.subscribes == 3
    assert sum("resubscribing" in r.getMessage() for r in caplog.records) == 2


async def test_undecodable_by_a_buggy_decoder_is_dead_lettered_not_fatal() -> None:
    """A decoder raising something other than DecodeError (deep nesting -> RecursionError in
    a validator, a bug in a custom type) dead-letters the message; the consumer goes on."""

    app = App(memory_url())
    seen: list[str] = []

    @app.subscriber("orders", group="billing")
    async def handle(order: Picky) -> None:
        seen.append(order.order_id)

    async with app, running(app) as task:
        await app.publish("orders", {"order_id": "bad"})
        await app.publish("orders", {"order_id": "good"})
        await wait_until(lambda: seen == ["good"])
        (dead,) = await read_dlq(app.broker, "orders", 1)
        assert not task.done()
    assert dead.headers[h.DLQ_REASON] == "decode-error"
    assert "RecursionError" in dead.headers[h.DLQ_DETAIL]
    assert dead.body == b'{"order_id":"bad"}'


class BrokenStore(MemoryIdempotencyStore):
    async def is_done(self, group: str, message_id: str) -> bool:
        raise OSError("database is locked")

    async def mark_done(self, group: str, message_id: str) -> None:
        raise OSError("disk full")


async def test_idempotency_store_failure_still_acks_the_handled_message() -> None:
    """The handler's side effect happened: a failing dedupe record must not cause a rerun,
    and a store that cannot answer must not redeliver every message in a tight loop."""
    url = memory_url()
    app = App(url, idempotency_store=BrokenStore())
    calls: list[int] = []

    @app.subscriber("orders", group="billing", idempotent=True)
    async def handle(order: Order, ctx: Context) -> None:
        calls.append(ctx.attempt)

    async with app, running(app):
        await app.publish("orders", Order(order_id="1"))
        await app.publish("orders", Order(order_id="2"))
        await wait_until(lambda: len(calls) >= 2)
    assert calls == [1, 1]
    assert app.stats.processed == 2


class AckFailsDelivery(Delivery):
    """A real delivery whose ack fails as if the connection dropped mid-ack."""

    __slots__ = ("inner",)

    def __init__(self, inner: Delivery) -> None:
        super().__init__(
            message=inner.message, topic=inner.topic, attempt=inner.attempt, group=inner.group
        )
        self.inner = inner

    async def _ack(self) -> None:
        raise BrokerError("channel closed")

    async def _nack(self, delay: float | None) -> None:
        await self.inner.nack(delay=delay)

    async def _dead_letter(self, dead: Message) -> None:
        await self.inner.dead_letter("unused")


class DeadLetterFailsDelivery(AckFailsDelivery):
    """A real delivery whose dead-lettering fails (the DLQ refuses it), acks work."""

    __slots__ = ()

    async def _ack(self) -> None:
        await self.inner.ack()

    async def _dead_letter(self, dead: Message) -> None:
        raise BrokerError("dead-letter queue refused the message")


class FailingAckBroker(FlakyBroker):
    """The first delivery of key "x" cannot be acked (or dead-lettered, with ``dlq_fails``)."""

    dlq_fails = False

    def subscribe(
        self, topic: str, *, group: str | None = None, prefetch: int = 100
    ) -> AbstractAsyncContextManager[AsyncIterator[Delivery]]:
        inner = self.inner.subscribe(topic, group=group, prefetch=prefetch)

        @asynccontextmanager
        async def session() -> AsyncIterator[AsyncIterator[Delivery]]:
            async with inner as it:

                async def deliveries() -> AsyncIterator[Delivery]:
                    async for delivery in it:
                        if delivery.attempt == 1 and delivery.message.key == "x":
                            wrap = DeadLetterFailsDelivery if self.dlq_fails else AckFailsDelivery
                            yield wrap(delivery)
                        else:
                            yield delivery

                yield deliveries()

        return session()


@pytest.fixture
def quick_failure_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lanes, "FAILURE_DELAY", 0.05)


@pytest.mark.usefixtures("quick_failure_delay")
async def test_failing_ack_is_logged_and_the_message_comes_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App(memory_url())
    calls: list[tuple[str, int]] = []

    @app.subscriber("orders", group="billing", retry=RetryPolicy(max_attempts=3))
    async def handle(order: Order, ctx: Context) -> None:
        calls.append((order.order_id, ctx.attempt))

    async with app:
        wrapped = FailingAckBroker(app.broker, failures=0)
        app._broker = wrapped
        with caplog.at_level(logging.WARNING, "eventwire"):
            async with running(app) as task:
                await app.publish("orders", Order(order_id="1"), key="x")
                await app.publish("orders", Order(order_id="2"))
                await wait_until(lambda: ("1", 2) in calls and ("2", 1) in calls)
                assert not task.done()
    assert any(
        "failed unexpectedly" in r.getMessage() and "channel closed" in str(r.exc_info)
        for r in caplog.records
    )


async def test_message_redelivered_past_its_budget_is_dead_lettered_uncalled() -> None:
    """A message whose consumer died holding it (OOM, SIGKILL) comes back with attempt + 1
    and no failure recorded; past max_attempts it must not be tried again (crash loop)."""
    url = memory_url()
    app = App(url)
    calls: list[str] = []

    @app.subscriber("orders", group="billing", retry=RetryPolicy(max_attempts=2))
    async def handle(order: Order) -> None:
        calls.append(order.order_id)

    async with app:
        broker = app.broker
        await app.publish("orders", Order(order_id="poison"))
        for _ in range(2):  # two consumers die while holding it
            async with broker.subscribe("orders", group="billing") as it:
                await anext(it)
        await app.publish("orders", Order(order_id="fine"))
        async with running(app):
            await wait_until(lambda: calls == ["fine"])
            (dead,) = await read_dlq(broker, "orders", 1)
    assert dead.headers[h.DLQ_REASON] == "max-attempts"
    assert dead.headers[h.DLQ_ATTEMPTS] == "3"
    assert h.DLQ_EXCEPTION_TYPE not in dead.headers
    assert app.stats.dead_lettered == 1


async def test_cancelling_run_is_not_swallowed() -> None:
    app = App(memory_url())

    @app.subscriber("idle", group="g")
    async def handle(order: Order) -> None:
        pass

    async with app:
        task = asyncio.create_task(app.run())
        await asyncio.wait_for(app.wait_ready(), 20)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 20)


@pytest.mark.usefixtures("quick_failure_delay")
async def test_failing_dead_letter_of_undecodable_returns_it_later_without_stalling() -> None:
    """Left unsettled, every such message held a prefetch slot for good: with prefetch of
    them the consumer stopped; returned at once, it would spin. It comes back later."""
    app = App(memory_url())
    seen: list[str] = []

    @app.subscriber("orders", group="billing", prefetch=1)
    async def handle(order: Order) -> None:
        seen.append(order.order_id)

    async with app:
        wrapped = FailingAckBroker(app.broker, failures=0)
        wrapped.dlq_fails = True
        app._broker = wrapped
        async with running(app) as task:
            await app.publish("orders", b"not json", key="x")
            await app.publish("orders", Order(order_id="after"))
            await wait_until(lambda: seen == ["after"])
            (dead,) = await read_dlq(app.broker, "orders", 1)
            assert not task.done()
    assert dead.headers[h.DLQ_REASON] == "decode-error"
    assert dead.headers[h.DLQ_ATTEMPTS] == "2"
    assert dead.body == b"not json"
