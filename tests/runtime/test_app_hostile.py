"""Hostile payloads against a pydantic-typed handler: no crash, no silent drop."""

from __future__ import annotations

import asyncio

import orjson
import pydantic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventwire.core import headers as h
from eventwire.core.message import Message
from eventwire.reliability.retry import RetryPolicy
from eventwire.runtime.app import App
from eventwire.runtime.context import Context

from .helpers import memory_url, read_dlq, running, scale, wait_until


class Event(pydantic.BaseModel):
    account: str
    seq: int


_valid = st.builds(
    lambda a, s: Event(account=a, seq=s).model_dump_json().encode(),
    st.text(max_size=30),
    st.integers(-(2**63), 2**63 - 1),
)
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_hostile = st.one_of(
    st.binary(max_size=300),  # random bytes
    _valid.flatmap(lambda b: st.integers(0, max(len(b) - 1, 0)).map(lambda n: b[:n])),  # truncated
    _json_values.map(orjson.dumps),  # well-formed JSON of the wrong shape
    st.fixed_dictionaries(
        {"account": st.integers(-(2**63), 2**63 - 1), "seq": st.text(max_size=5)}
    ).map(orjson.dumps),
    st.binary(min_size=1, max_size=20).map(lambda b: b'{"account": "\xff' + b + b'", "seq": 1}'),
    st.integers(1_000, 300_000).map(lambda n: b'{"account": "' + b"a" * n + b'", "seq": 1}'),
    st.integers(300, 20_000).map(lambda n: b"[" * n),  # deep nesting
    st.integers(100_000, 1_500_000).map(
        lambda n: b'{"account": "x", "seq": 1' + b" " * n + b"}"
    ),  # huge, valid
    _valid,
)


async def _scenario(bodies: list[bytes]) -> None:
    app = App(memory_url())
    processed: set[str] = set()

    @app.subscriber(
        "hostile", group="g", concurrency=4, retry=RetryPolicy(max_attempts=2, initial_delay=0.001)
    )
    async def handle(event: Event, ctx: Context) -> None:
        assert isinstance(event, Event)
        processed.add(ctx.message.id)

    messages = [Message(body=b, content_type="application/json") for b in bodies]
    async with app, running(app) as task:
        await app.broker.publish("hostile", *messages)
        await wait_until(lambda: app.stats.processed + app.stats.dead_lettered >= len(messages))
        dead = await read_dlq(app.broker, "hostile", app.stats.dead_lettered)
        assert not task.done()  # the consumer survived everything
    dead_ids = {m.id for m in dead}
    assert all(m.headers[h.DLQ_REASON] in {"decode-error", "validation-error"} for m in dead)
    assert processed | dead_ids == {m.id for m in messages}  # nothing dropped silently
    assert not processed & dead_ids
    assert app.stats.processed == len(processed)
    assert app.stats.failed == 0
    by_id = {m.id: m.body for m in messages}
    assert all(m.body == by_id[m.id] for m in dead)


@settings(
    max_examples=scale(12, 100),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(_hostile, min_size=1, max_size=25))
def test_hostile_payloads_never_crash_or_vanish(bodies: list[bytes]) -> None:
    asyncio.run(_scenario(bodies))
