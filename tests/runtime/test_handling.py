"""Processor unit tests on a recording delivery, with an injected sleep and clock."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventwire.core import headers as h
from eventwire.core.errors import PermanentError
from eventwire.core.message import Message
from eventwire.observability.counters import AppCounters
from eventwire.reliability.dead_letter import FailureLog
from eventwire.reliability.idempotency import MemoryIdempotencyStore
from eventwire.reliability.retry import RetryPolicy
from eventwire.runtime.context import Context
from eventwire.runtime.handling import Processor, Timing
from eventwire.runtime.stats import AppStats
from eventwire.runtime.subscriber import build_spec

from .fakes import RecordingDelivery


class Order(pydantic.BaseModel):
    order_id: str


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def no_publish(
    topic: str,
    payload: object,
    *,
    key: str | None,
    headers: Mapping[str, str] | None,
    correlation_id: str | None,
    causation_id: str | None,
) -> Message:
    raise AssertionError("not expected")


class LiveStats:
    """``AppStats`` of ``counters`` as they are when an attribute is read."""

    def __init__(self, counters: AppCounters) -> None:
        self._counters = counters

    def __getattr__(self, name: str) -> int:
        value: int = getattr(AppStats.of(self._counters), name)
        return value


def processor(
    handler: Any, *, in_place: bool = False, stopping: asyncio.Event | None = None, **options: Any
) -> tuple[Processor, LiveStats, FakeTime]:
    fake = FakeTime()
    counters = AppCounters()
    defaults: dict[str, Any] = {
        "topic": "orders",
        "group": "g",
        "concurrency": 1,
        "prefetch": None,
        "retry": RetryPolicy(max_attempts=3, initial_delay=1.0, jitter=0.0),
        "ordered_by": None,
        "idempotent": False,
        "ack": "after",
    }
    spec = build_spec(handler, **{**defaults, **options})
    proc = Processor(
        spec,
        counters=counters.subscriber(spec.topic, spec.group, spec.name),
        store=MemoryIdempotencyStore(),
        publish=no_publish,
        failures=FailureLog(clock=fake.clock),
        stopping=stopping or asyncio.Event(),
        in_place_retries=in_place,
        timing=Timing(sleep=fake.sleep, clock=fake.clock, rng=random.Random(0)),
    )
    return proc, LiveStats(counters), fake


async def run(proc: Processor, delivery: RecordingDelivery) -> None:
    """What a consumer and its worker do with one delivery."""
    _, step, value = proc.admit(delivery)
    await step(delivery, value)


async def test_success_acks_and_context_is_filled() -> None:
    seen: list[tuple[Order, int, str]] = []

    async def handle(order: Order, ctx: Context) -> None:
        seen.append((order, ctx.attempt, ctx.topic))
        ctx.logger.info("handled")

    proc, stats, _ = processor(handle)
    d = RecordingDelivery(b'{"order_id":"1"}', topic="orders", attempt=2)
    await run(proc, d)
    assert seen == [(Order(order_id="1"), 2, "orders")]
    assert d.settled == "ack"
    assert stats.processed == 1


async def test_failure_nacks_with_backoff_then_dead_letters_with_headers() -> None:
    async def handle(order: Order) -> None:
        raise ValueError("nope")

    proc, stats, fake = processor(handle)
    first = RecordingDelivery(b'{"order_id":"1"}')
    await run(proc, first)
    assert first.settled == "nack"
    assert first.nack_delays == [1.0]
    fake.now += 5
    second = RecordingDelivery(message=first.message, attempt=2)
    await run(proc, second)
    assert second.nack_delays == [2.0]
    fake.now += 5
    last = RecordingDelivery(message=first.message, attempt=3)
    await run(proc, last)
    assert last.settled == "dead-letter"
    assert last.dead is not None
    dead = last.dead.headers
    assert dead[h.DLQ_REASON] == "max-attempts"
    assert dead[h.DLQ_ATTEMPTS] == "3"
    assert dead[h.DLQ_EXCEPTION_TYPE] == "ValueError"
    assert dead[h.DLQ_EXCEPTION_MESSAGE] == "nope"
    assert dead[h.DLQ_ORIGINAL_TOPIC] == "t"
    assert dead[h.DLQ_FIRST_FAILURE].startswith("1970-01-01T00:01:40")  # t=100, kept
    assert dead[h.DLQ_LAST_FAILURE].startswith("1970-01-01T00:01:50")  # t=110
    assert last.dead.body == first.message.body
    assert (stats.failed, stats.retried, stats.dead_lettered) == (3, 2, 1)
    assert fake.sleeps == []  # never slept on the message


async def test_permanent_error_skips_retries() -> None:
    async def handle(order: Order) -> None:
        raise PermanentError("card declined")

    proc, stats, _ = processor(handle)
    d = RecordingDelivery(b'{"order_id":"1"}')
    await run(proc, d)
    assert d.dead is not None
    assert d.dead.headers[h.DLQ_REASON] == "permanent-error"
    assert stats.retried == 0


@pytest.mark.parametrize(
    ("body", "reason"), [(b"\xff", "decode-error"), (b'{"x":1}', "validation-error")]
)
async def test_decode_failures_dead_letter_at_once(body: bytes, reason: str) -> None:
    calls = 0

    async def handle(order: Order) -> None:
        nonlocal calls
        calls += 1

    proc, stats, _ = processor(handle)
    d = RecordingDelivery(body)
    await run(proc, d)
    assert calls == 0
    assert d.dead is not None
    assert d.dead.body == body
    assert d.dead.headers[h.DLQ_REASON] == reason
    assert d.dead.headers[h.DLQ_DETAIL]
    assert stats.dead_lettered == 1
    assert stats.retried == 0


async def test_in_place_retries_sleep_inside_and_count_attempts() -> None:
    attempts: list[int] = []

    async def handle(order: Order, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ValueError("flaky")

    proc, stats, fake = processor(handle, ordered_by="order_id")
    d = RecordingDelivery(b'{"order_id":"1"}')
    await run(proc, d)
    assert attempts == [1, 2, 3]
    assert d.settled == "ack"
    assert fake.sleeps == [1.0, 2.0]
    assert d.nack_delays == []
    assert (stats.retried, stats.processed) == (2, 1)


async def test_in_place_retry_gives_way_to_shutdown() -> None:
    stopping = asyncio.Event()

    async def handle(order: Order) -> None:
        stopping.set()
        raise ValueError("flaky")

    proc, _, fake = processor(handle, in_place=True, stopping=stopping)
    d = RecordingDelivery(b'{"order_id":"1"}')
    await run(proc, d)
    assert d.settled == "nack"
    assert fake.sleeps == []


async def test_idempotent_suppresses_completed_messages() -> None:
    calls = 0

    async def handle(order: Order) -> None:
        nonlocal calls
        calls += 1

    proc, stats, _ = processor(handle, idempotent=True)
    first = RecordingDelivery(b'{"order_id":"1"}')
    await run(proc, first)
    again = RecordingDelivery(message=first.message, attempt=2)
    await run(proc, again)
    assert calls == 1
    assert again.settled == "ack"
    assert stats.duplicates_suppressed == 1


async def test_ack_before_is_at_most_once() -> None:
    order: list[str] = []

    async def handle(o: Order) -> None:
        order.append(f"handler saw {d.settled}")
        raise ValueError("lost")

    proc, stats, _ = processor(handle, ack="before")
    d = RecordingDelivery(b'{"order_id":"1"}')
    await run(proc, d)
    assert order == ["handler saw ack"]
    assert d.settled == "ack"
    assert stats.failed == 1
    assert stats.retried == 0


async def test_ordered_retry_interrupted_by_shutdown_goes_back_undelayed() -> None:
    """A delayed nack would let the key's later messages, returned right after it by the
    shutdown, overtake it on the next run."""
    stopping = asyncio.Event()

    async def handle(order: Order) -> None:
        stopping.set()
        raise ValueError("flaky")

    proc, _, _ = processor(handle, ordered_by="order_id", stopping=stopping)
    d = RecordingDelivery(b'{"order_id":"1"}', key="1")
    await run(proc, d)
    assert d.nack_delays == [None]


_ANNOTATIONS: list[Any] = [Order, dict, list[Order], str, bytes, Message, None]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=200) | st.sampled_from([b'{"order_id":"1"}', b"[]", b'"x"']),
    content_type=st.text(max_size=40)
    | st.sampled_from(["application/json", "application/x-pickle", "text/plain", ""]),
    which=st.integers(0, len(_ANNOTATIONS) - 1),
)
async def test_admit_never_raises_and_every_delivery_is_settled(
    body: bytes, content_type: str, which: int
) -> None:
    """Whatever the body and content type, ``admit`` hands back a job (never an exception
    that would end the consumer) and that job settles the delivery: handled, or dead-lettered
    with its bytes unchanged."""
    annotation = _ANNOTATIONS[which]

    async def handle(value: object) -> None:
        return None

    # Set at run time: a string annotation could not name this local (postponed evaluation).
    handle.__annotations__ = {"return": None} if annotation is None else {"value": annotation}
    proc, _, _ = processor(handle)
    delivery = RecordingDelivery(message=Message(body=body, content_type=content_type))
    await run(proc, delivery)
    assert delivery.settled in ("ack", "dead-letter")
    if delivery.settled == "dead-letter":
        assert delivery.dead is not None
        assert delivery.dead.body == body
        assert delivery.dead.headers[h.DLQ_REASON]
