"""Tracing on the embedded broker: off unless ``instrument()`` was called (and then not even
imported), batches, in-place retries, undecodable input, ack-before failures, re-published
messages, and the extra's import boundary."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel

from eventwire.core.errors import ConfigurationError
from eventwire.core.message import Message
from eventwire.observability import tracing
from eventwire.reliability.dead_letter import REASON_DECODE, REASON_MAX_ATTEMPTS
from eventwire.runtime.app import App
from eventwire.runtime.context import Context
from runtime.helpers import running, wait_until
from test_imports import loaded_after

from .tracing_support import FAST_RETRY, by_name, cleaned, run_dead_letter, traced


def token() -> str:
    return f"tr{uuid.uuid4().hex[:8]}"


def test_tracing_off_never_loads_opentelemetry() -> None:
    # A whole App round trip with JSON logs, and tracing never instrumented.
    body = """
import asyncio
from eventwire.observability.logs import configure_logging
from eventwire.runtime.app import App
configure_logging("json")
app = App("memory://imports", name="svc")
seen = []
@app.subscriber("t", group="g")
async def handle(payload: dict, ctx) -> None:
    ctx.logger.info("handled")
    seen.append(ctx.message)
async def main():
    async with app:
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        await app.wait_ready()
        await app.publish("t", {"n": 1})
        while not seen:
            await asyncio.sleep(0.01)
        stop.set()
        await task
    assert "traceparent" not in seen[0].headers
asyncio.run(main())
"""
    assert loaded_after(body, ("opentelemetry",)) == []
    assert loaded_after("import eventwire\nimport eventwire.cli.main", ("opentelemetry",)) == []


async def test_without_instrument_there_are_no_spans_and_no_trace_headers() -> None:
    with traced() as exporter:
        tracing.uninstrument()  # the provider exists; eventwire was not told to use it
        app = App(f"memory://{token()}", name="off")
        seen: list[Message] = []

        @app.subscriber("t", group="g")
        async def handle(payload: dict[str, Any], ctx: Context) -> None:
            seen.append(ctx.message)

        async with app, running(app):
            await app.publish("t", {"n": 1})
            await app.publish_batch("t", [{"n": 2}])
            await wait_until(lambda: len(seen) == 2)
        processor = app._supervisor._consumers[0].processor
        assert processor._plan == processor._at_least_once
    assert exporter.get_finished_spans() == ()
    assert [m.headers for m in seen] == [{}, {}]


async def test_a_batch_is_one_producer_span_whose_context_every_message_carries() -> None:
    name = token()
    app = App(f"memory://{name}", name="batch")
    seen: list[Message] = []

    @app.subscriber(f"{name}.t", group="g")
    async def handle(payload: dict[str, Any], ctx: Context) -> None:
        seen.append(ctx.message)

    with traced() as exporter:
        async with app, running(app):
            sent = await app.publish_batch(f"{name}.t", [{"n": n} for n in range(3)])
            await wait_until(lambda: len(seen) == 3)
    spans = by_name(exporter.get_finished_spans(), name)
    (batch,) = spans["publish t"]
    assert batch.kind is SpanKind.PRODUCER
    assert batch.attributes is not None
    assert batch.attributes["messaging.batch.message_count"] == 3
    assert batch.context is not None
    parent = f"{batch.context.span_id:016x}"
    assert {m.headers["traceparent"].split("-")[2] for m in sent} == {parent}
    handlings = spans["process t"]
    assert len(handlings) == 3
    assert {s.parent.span_id for s in handlings if s.parent} == {batch.context.span_id}


async def test_an_in_place_retry_and_its_dead_letter_are_events_of_one_handling_span() -> None:
    name = token()
    with traced() as exporter:
        async with cleaned("memory", "", name) as created:
            letter = await run_dead_letter(f"memory://{name}", name, created, in_place=True)
    (handling,) = by_name(exporter.get_finished_spans(), name)["process payments"]
    assert [e.name for e in handling.events] == ["exception", "retry", "exception", "dead_letter"]
    assert handling.events[1].attributes == {
        "eventwire.delivery.attempt": 1,
        "eventwire.retry.delay_s": FAST_RETRY.initial_delay,
    }
    assert handling.events[3].attributes is not None
    assert handling.events[3].attributes["eventwire.dead_letter.reason"] == REASON_MAX_ATTEMPTS
    assert handling.events[3].attributes["eventwire.delivery.attempt"] == 2
    assert handling.status.status_code is StatusCode.ERROR
    assert handling.attributes is not None
    assert handling.attributes["messaging.message.id"] == letter.id


class Order(BaseModel):
    order_id: str


async def test_an_undecodable_message_is_dead_lettered_on_its_span() -> None:
    name = token()
    app = App(f"memory://{name}", name="decode")

    @app.subscriber(f"{name}.orders", group="g")
    async def handle(order: Order) -> None:
        raise AssertionError("never called")

    with traced() as exporter:
        async with app, running(app):
            await app.publish(f"{name}.orders", {"no": "order_id"})
            await wait_until(lambda: app.stats.dead_lettered == 1)
    (handling,) = by_name(exporter.get_finished_spans(), name)["process orders"]
    assert [e.name for e in handling.events] == ["exception", "dead_letter"]
    assert handling.events[1].attributes is not None
    assert handling.events[1].attributes["eventwire.dead_letter.reason"] in {
        REASON_DECODE,
        "validation-error",
    }
    assert handling.status.status_code is StatusCode.ERROR


async def test_an_ack_before_failure_is_an_error_on_its_span() -> None:
    name = token()
    app = App(f"memory://{name}", name="before")

    @app.subscriber(f"{name}.t", group="g", ack="before")
    async def handle(payload: dict[str, Any]) -> None:
        raise ValueError("lost on purpose")

    with traced() as exporter:
        async with app, running(app):
            await app.publish(f"{name}.t", {"n": 1})
            await wait_until(lambda: app.stats.failed == 1)
    (handling,) = by_name(exporter.get_finished_spans(), name)["process t"]
    assert handling.status.status_code is StatusCode.ERROR
    assert handling.status.description == "handler failed: ValueError"
    assert [e.name for e in handling.events] == ["exception"]


async def test_a_republished_message_carries_the_new_publish_context_not_its_old_one() -> None:
    name = token()
    app = App(f"memory://{name}", name="forward")
    forwarded: list[Message] = []

    @app.subscriber(f"{name}.in", group="g")
    async def forward(payload: dict[str, Any], ctx: Context) -> None:
        await ctx.publish(f"{name}.out", ctx.message)  # the raw message, its headers too

    @app.subscriber(f"{name}.out", group="g")
    async def land(payload: dict[str, Any], ctx: Context) -> None:
        forwarded.append(ctx.message)

    with traced() as exporter:
        async with app, running(app):
            first = await app.publish(f"{name}.in", {"n": 1})
            await wait_until(lambda: bool(forwarded))
    (republish,) = by_name(exporter.get_finished_spans(), name)["publish out"]
    assert republish.context is not None
    assert first.headers["traceparent"] != forwarded[0].headers["traceparent"]
    assert forwarded[0].headers["traceparent"].split("-")[2] == f"{republish.context.span_id:016x}"


def test_instrument_refuses_what_is_not_a_tracer_provider() -> None:
    with pytest.raises(ConfigurationError, match="must be an OpenTelemetry TracerProvider"):
        tracing.instrument(object())
    assert tracing.active() is None


async def test_instrument_without_a_provider_follows_the_global_one() -> None:
    # The API's proxy provider: spans are non-recording until an SDK provider is set
    # globally, yet the context still travels (a valid one only once an SDK samples it).
    tracer = tracing.instrument()
    try:
        assert tracing.active() is tracer
        app = App(f"memory://{token()}", name="global")
        async with app:
            sent = await asyncio.wait_for(app.publish("t", {"n": 1}), 10)
        assert "traceparent" not in sent.headers  # nothing recorded: no context to inject
    finally:
        tracing.uninstrument()


@pytest.mark.parametrize(
    "headers",
    [
        {"traceparent": "garbage"},
        {"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"},  # the invalid all-zero ids
        {"traceparent": "ff-" + "a" * 32 + "-" + "b" * 16 + "-01", "baggage": "=" * 9000},
    ],
    ids=["garbage", "zero-ids", "bad-version-huge-baggage"],
)
async def test_a_foreign_trace_header_that_is_not_valid_starts_a_new_trace(
    headers: dict[str, str],
) -> None:
    # A hostile or broken producer's headers never fail the handling: a root span instead.
    name = token()
    app = App(f"memory://{name}", name="foreign")
    seen: list[Message] = []

    @app.subscriber(f"{name}.t", group="g")
    async def handle(payload: dict[str, Any], ctx: Context) -> None:
        seen.append(ctx.message)

    with traced() as exporter:
        async with app, running(app):
            await app.broker.publish(
                f"{name}.t",
                Message(body=b'{"n": 1}', content_type="application/json", headers=headers),
            )
            await wait_until(lambda: bool(seen))
    (handling,) = by_name(exporter.get_finished_spans(), name)["process t"]
    assert handling.parent is None
    assert handling.links == ()
    assert handling.attributes is not None
    assert handling.attributes["eventwire.settlement"] == "ack"


async def test_a_foreign_producers_w3c_context_and_tracestate_are_continued() -> None:
    # A producer that is not eventwire (any W3C-propagating client) sets the headers itself.
    trace_id, parent_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    name = token()
    app = App(f"memory://{name}", name="interop")
    forwarded: list[Message] = []

    @app.subscriber(f"{name}.in", group="g")
    async def forward(payload: dict[str, Any], ctx: Context) -> None:
        await ctx.publish(f"{name}.out", payload)

    @app.subscriber(f"{name}.out", group="g")
    async def land(payload: dict[str, Any], ctx: Context) -> None:
        forwarded.append(ctx.message)

    headers = {
        "traceparent": f"00-{trace_id}-{parent_span}-01",
        "tracestate": "vendor=abc,other=x1",
        "baggage": "tenant=acme",
    }
    with traced() as exporter:
        async with app, running(app):
            await app.broker.publish(
                f"{name}.in",
                Message(body=b'{"n": 1}', content_type="application/json", headers=headers),
            )
            await wait_until(lambda: bool(forwarded))
    (handling,) = by_name(exporter.get_finished_spans(), name)["process in"]
    assert handling.parent is not None
    assert f"{handling.parent.span_id:016x}" == parent_span
    assert handling.context is not None
    assert f"{handling.context.trace_id:032x}" == trace_id
    out = forwarded[0].headers
    assert out["traceparent"].split("-")[1] == trace_id
    assert out["tracestate"] == "vendor=abc,other=x1"
    assert out["baggage"] == "tenant=acme"
