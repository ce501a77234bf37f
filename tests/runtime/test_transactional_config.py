"""transactional=True registrations: what cannot be exactly-once is refused up front with a
one-line ConfigurationError, and a broker without transactions (memory://) is refused when
the app starts consuming, before any message is handled."""

from __future__ import annotations

from typing import Any

import pytest

from eventwire.core.errors import ConfigurationError
from eventwire.core.message import Message
from eventwire.runtime.app import App
from eventwire.runtime.context import Context

from .helpers import memory_url


async def handler(message: Message, ctx: Context) -> None:
    await ctx.publish("out", message.body)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({}, "needs a group"),
        ({"group": "g", "concurrency": 4}, "needs concurrency=1, got 4"),
        ({"group": "g", "ack": "before"}, "cannot use ack='before'"),
        ({"group": "g", "idempotent": True}, "cannot be idempotent=True"),
    ],
)
def test_a_registration_that_cannot_be_exactly_once_is_refused(
    options: dict[str, Any], says: str
) -> None:
    app = App(memory_url())
    with pytest.raises(ConfigurationError, match=says) as caught:
        app.subscriber("in", transactional=True, **options)(handler)
    assert "\n" not in str(caught.value)
    assert app.subscribers == ()


def test_a_valid_registration_reads_one_delivery_at_a_time() -> None:
    app = App(memory_url())
    app.subscriber("in", group="g", transactional=True)(handler)
    (spec,) = app.subscribers
    assert spec.transactional
    assert spec.effective_prefetch(1) == 1


async def test_a_broker_without_transactions_is_refused_before_consuming() -> None:
    app = App(memory_url())
    handled: list[Message] = []

    @app.subscriber("in", group="g", transactional=True)
    async def transform(message: Message, ctx: Context) -> None:
        handled.append(message)

    async with app:
        await app.publish("in", b"x")
        with pytest.raises(ConfigurationError, match="needs a broker with transactions") as caught:
            await app.run()
    assert "memory has none" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert handled == []


async def test_run_concurrency_above_one_is_refused_for_a_transactional_subscriber() -> None:
    app = App(memory_url())
    app.subscriber("in", group="g", transactional=True)(handler)
    async with app:
        with pytest.raises(ConfigurationError, match=r"run\(concurrency=2\) sets more"):
            await app.run(concurrency=2)
