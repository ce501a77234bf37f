"""App on the real memory broker: encoding, context, causation, stats, URL defaults."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pydantic
import pytest

from eventwire.core.errors import ClosedError, ConfigurationError
from eventwire.core.message import Message
from eventwire.runtime.app import App
from eventwire.runtime.broker_url import DEFAULT_BROKER_URL, resolve_broker_url
from eventwire.runtime.context import Context

from .helpers import memory_url, running, wait_until


class OrderPlaced(pydantic.BaseModel):
    order_id: str
    amount: int


async def test_typed_handler_context_and_causal_chain() -> None:
    app = App(memory_url(), name="shop")
    got: list[tuple[OrderPlaced, str, int, dict[str, str]]] = []
    followups: list[Message] = []

    @app.subscriber("orders.placed", group="billing")
    async def bill(order: OrderPlaced, ctx: Context) -> None:
        got.append((order, ctx.topic, ctx.attempt, dict(ctx.headers)))
        assert ctx.logger.fields["correlation_id"] == "corr-1"
        await ctx.publish("orders.billed", {"order_id": order.order_id}, key=order.order_id)

    @app.subscriber("orders.billed", group="mail")
    async def mail(message: Message) -> None:
        followups.append(message)

    async with app, running(app):
        sent = await app.publish(
            "orders.placed",
            OrderPlaced(order_id="o1", amount=3),
            key="o1",
            headers={"tenant": "t1"},
            correlation_id="corr-1",
        )
        await wait_until(lambda: len(followups) == 1)
    assert sent.content_type == "application/json"
    assert sent.correlation_id == "corr-1"
    assert got == [(OrderPlaced(order_id="o1", amount=3), "orders.placed", 1, {"tenant": "t1"})]
    follow = followups[0]
    assert follow.correlation_id == "corr-1"
    assert follow.causation_id == sent.id
    assert follow.key == "o1"
    assert follow.body == b'{"order_id":"o1"}'
    stats = app.stats
    assert (stats.published, stats.processed, stats.failed) == (2, 2, 0)


async def test_payload_encodings_reach_matching_handlers() -> None:
    app = App(memory_url())
    seen: dict[str, Any] = {}

    @app.subscriber("raw", group="g")
    async def raw(body: bytes) -> None:
        seen["bytes"] = body

    @app.subscriber("text", group="g")
    async def text(body: str) -> None:
        seen["str"] = body

    @app.subscriber("json", group="g")
    async def as_dict(body: dict[str, Any]) -> None:
        seen["dict"] = body

    @app.subscriber("list", group="g")
    async def as_any(body: Any) -> None:
        seen["any"] = body

    async with app, running(app):
        m1 = await app.publish("raw", b"\x00\xff")
        m2 = await app.publish("text", "héllo")
        await app.publish("json", {"a": 1})
        batch = await app.publish_batch("list", [[1], [2]], key=lambda p: str(p[0]))
        await wait_until(lambda: len(seen) == 4 and app.stats.processed == 5)
    assert seen["bytes"] == b"\x00\xff"
    assert seen["str"] == "héllo"
    assert seen["dict"] == {"a": 1}
    assert seen["any"] in ([1], [2])
    assert m1.content_type == "application/octet-stream"
    assert m2.content_type.startswith("text/plain")
    assert [m.key for m in batch] == ["1", "2"]
    assert app.stats.published == 5


async def test_registration_errors_are_clear() -> None:
    app = App(memory_url())

    def sync_handler(x: bytes) -> None: ...

    with pytest.raises(ConfigurationError, match="async"):
        app.subscriber("t")(sync_handler)  # type: ignore[arg-type]  # a sync handler on purpose: the refusal is what is tested
    with pytest.raises(ConfigurationError, match="positional"):

        @app.subscriber("t")
        async def too_many(a: bytes, b: Context, c: int) -> None: ...

    with pytest.raises(ConfigurationError, match="concurrency"):

        @app.subscriber("t", concurrency=0)
        async def h(a: bytes) -> None: ...

    with pytest.raises(ConfigurationError, match="topic name"):

        @app.subscriber("bad topic")
        async def h2(a: bytes) -> None: ...

    with pytest.raises(ConfigurationError, match="no subscribers"):
        async with app:
            await app.run()
    with pytest.raises(ClosedError):
        await app.publish("t", b"x")


def test_broker_url_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EVENTWIRE_BROKER_URL", raising=False)
    assert resolve_broker_url("memory://x") == "memory://x"
    with caplog.at_level(logging.INFO, logger="eventwire"):
        assert resolve_broker_url(None) == DEFAULT_BROKER_URL
    assert (tmp_path / ".eventwire").is_dir()
    assert "EVENTWIRE_BROKER_URL" in caplog.text
    monkeypatch.setenv("EVENTWIRE_BROKER_URL", "memory://from-env")
    assert resolve_broker_url(None) == "memory://from-env"


async def test_password_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    app = App("memory://user:s3cret-pw@hub-pw")
    with caplog.at_level(logging.DEBUG, logger="eventwire"):
        async with app:
            pass
    assert "connected to memory://user:***@hub-pw" in caplog.text
    assert "s3cret-pw" not in caplog.text


async def test_wait_ready_begun_before_connect_is_woken_by_the_run() -> None:
    # A waiter that starts before run() connects (gather(app.run(), probe()) in a test or a
    # sidecar): connect() must not swap the readiness event it waits on for a new one.
    app = App(memory_url(), name="early")

    @app.subscriber("early.topic", group="g")
    async def handle(body: bytes) -> None:
        del body

    waiter = asyncio.create_task(app.wait_ready())
    await asyncio.sleep(0)  # the waiter is waiting before anything is connected
    stop = asyncio.Event()
    run = asyncio.create_task(app.run(stop))
    try:
        await asyncio.wait_for(waiter, 10)
        assert app.ready
    finally:
        stop.set()
        await asyncio.wait_for(run, 10)
