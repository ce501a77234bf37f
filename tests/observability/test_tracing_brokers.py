"""Tracing and correlated logs across services, on memory and the real shared RabbitMQ and
Kafka: A -> B -> C is one trace of linked PRODUCER/CONSUMER spans, and every log line the
three services write about it carries the same correlation id; a retried, then
dead-lettered message shows both on its spans. What a run creates on a server is deleted."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from eventwire.brokers.catalog import profile_named
from eventwire.reliability.dead_letter import REASON_MAX_ATTEMPTS

from .tracing_support import (
    PROFILES,
    SYSTEM,
    by_name,
    cleaned,
    json_lines,
    new_token,
    on_profiles,
    run_chain,
    run_dead_letter,
    traced,
    url_of,
)

pytestmark = pytest.mark.timeout(180)

EVERY_PROFILE = tuple(PROFILES)
WITH_DEAD_LETTERS = tuple(p for p in PROFILES if profile_named(p).capabilities.dead_letter)


def retries_in_place(profile: str) -> bool:
    """No delayed redelivery: the runtime retries inside one handling (one span)."""
    return not profile_named(profile).capabilities.delayed_redelivery


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return cast("int", span.context.span_id)  # opentelemetry types SpanContext's fields as Any


def attempt_of(span: ReadableSpan) -> int:
    """The delivery attempt eventwire records on every handling span."""
    assert span.attributes is not None
    return cast("int", span.attributes["eventwire.delivery.attempt"])


@on_profiles(*EVERY_PROFILE)
async def test_a_to_b_to_c_is_one_trace_and_one_correlation_id(
    profile: str, tmp_path: Path
) -> None:
    token = new_token(profile)
    url = url_of(profile, token, tmp_path)
    with traced() as exporter, json_lines() as lines:
        async with cleaned(profile, url, token) as created:
            chain = await run_chain(url, token, created)
    spans = by_name(exporter.get_finished_spans(), token)
    t0, t1, t2 = ("requests", "orders", "invoices")

    # One trace: every span of the run shares the first publish's trace id.
    everything = [s for group in spans.values() for s in group]
    assert {s.context.trace_id for s in everything if s.context} == {
        spans[f"publish {t0}"][0].context.trace_id
    }
    assert sorted(spans) == sorted(
        f"{op} {t}" for op in ("publish", "process") for t in (t0, t1, t2)
    )
    (pub0,), (proc0,) = spans[f"publish {t0}"], spans[f"process {t0}"]
    (pub1,), procs1 = spans[f"publish {t1}"], spans[f"process {t1}"]
    (pub2,), (proc2,) = spans[f"publish {t2}"], spans[f"process {t2}"]
    assert pub0.parent is None  # A's request starts the trace
    # Each handling is a child of the publish whose context its headers carried, and linked
    # to it; each publish from a handler is a child of that handling.
    for producer, consumers in ((pub0, [proc0]), (pub1, procs1), (pub2, [proc2])):
        for consumer in consumers:
            assert parent_id(consumer) == span_id(producer)
            assert [link.context.span_id for link in consumer.links] == [span_id(producer)]
    assert parent_id(pub1) == span_id(proc0)
    # B's first attempt failed and was retried: on its span. Redelivered, the second
    # attempt is a handling span of its own; retried in place, it is the same one.
    assert chain.attempts_in_b == [1, 2]
    attempts = {attempt_of(s): s for s in procs1}
    first = attempts[1]
    assert [e.name for e in first.events] == ["exception", "retry"]
    assert first.events[1].attributes == {
        "eventwire.delivery.attempt": 1,
        "eventwire.retry.delay_s": 0.05,
    }
    if retries_in_place(profile):
        assert list(attempts) == [1]
        assert first.status.status_code is StatusCode.UNSET  # the handling succeeded
        assert parent_id(pub2) == span_id(first)
    else:
        assert sorted(attempts) == [1, 2]
        assert first.status.status_code is StatusCode.ERROR
        assert attempts[2].status.status_code is StatusCode.UNSET
        assert parent_id(pub2) == span_id(attempts[2])

    # The messaging conventions' attributes.
    grouped = profile_named(profile).capabilities.consumer_groups
    messages = {m.id: m for m in chain.messages}
    for name, kind, operation in (
        ("publish", SpanKind.PRODUCER, "send"),
        ("process", SpanKind.CONSUMER, "process"),
    ):
        for topic in (t0, t1, t2):
            for span in spans[f"{name} {topic}"]:
                attrs: dict[str, Any] = dict(span.attributes or {})
                assert span.kind is kind
                assert attrs["messaging.system"] == SYSTEM[profile]
                assert attrs["messaging.destination.name"] == f"{token}.{topic}"
                assert attrs["messaging.operation.type"] == operation
                assert attrs["messaging.message.id"] in messages
                assert attrs["messaging.message.conversation_id"] == f"req-{token}"
                if kind is SpanKind.CONSUMER and grouped:
                    service = "abc"[(t0, t1, t2).index(topic)]
                    assert attrs["messaging.consumer.group.name"] == f"{token}-{service}"
                elif kind is SpanKind.CONSUMER:
                    assert "messaging.consumer.group.name" not in attrs
    # The W3C headers travelled with the message, and A's baggage reached C through B.
    last = chain.messages[-1]
    assert last.headers["traceparent"].split("-")[2] == f"{span_id(pub2):016x}"
    assert last.headers["baggage"] == "tenant=acme"
    assert chain.baggage_in_c == "acme"

    # Logs: every line about one of the three messages, A's, B's (the runtime's retry line
    # too) and C's, has A's correlation id; the causation ids chain them; the trace ids match.
    request, order, invoice = chain.messages
    about = [line for line in lines if line["topic"] in {f"{token}.{t}" for t in (t0, t1, t2)}]
    assert {line["message"] for line in about} >= {
        "order accepted",
        "order billed",
        "customer notified",
    }
    assert any(
        line["level"] == "WARNING" and line["logger"] == "eventwire.runtime"
        and line["message"].startswith("attempt 1 failed (RuntimeError: ledger busy)")
        for line in about
    )  # fmt: skip
    assert {line["correlation_id"] for line in about} == {f"req-{token}"}
    causes = {line["message_id"]: line["causation_id"] for line in about}
    assert causes == {request.id: None, order.id: request.id, invoice.id: order.id}
    assert {line["trace_id"] for line in about} == {f"{pub0.context.trace_id:032x}"}


@on_profiles(*WITH_DEAD_LETTERS)
async def test_retried_then_dead_lettered_message_shows_both_on_its_spans(
    profile: str, tmp_path: Path
) -> None:
    token = new_token(profile)
    url = url_of(profile, token, tmp_path)
    with traced() as exporter:
        async with cleaned(profile, url, token) as created:
            letter = await run_dead_letter(url, token, created, in_place=False)
    spans = by_name(exporter.get_finished_spans(), token)
    (publish,) = spans["publish payments"]
    if retries_in_place(profile):
        (handling,) = spans["process payments"]
        assert [e.name for e in handling.events] == [
            *("exception", "retry", "exception", "dead_letter")
        ]
        assert handling.status.description == f"dead-lettered: {REASON_MAX_ATTEMPTS}"
        assert letter.headers["traceparent"].split("-")[2] == f"{span_id(publish):016x}"
        return
    handlings = sorted(spans["process payments"], key=attempt_of)
    assert [attempt_of(s) for s in handlings] == [1, 2]
    assert {s.attributes["messaging.message.id"] for s in handlings} == {letter.id}  # type: ignore[index]  # a finished span's attributes are never None
    first, last = handlings
    assert all(parent_id(s) == span_id(publish) for s in handlings)
    assert [e.name for e in first.events] == ["exception", "retry"]
    assert first.status.status_code is StatusCode.ERROR
    assert [e.name for e in last.events] == ["exception", "dead_letter"]
    assert last.events[1].attributes == {
        "eventwire.dead_letter.reason": REASON_MAX_ATTEMPTS,
        "eventwire.dead_letter.topic": f"{token}.payments.dlq",
        "eventwire.delivery.attempt": 2,
    }
    assert last.events[0].attributes["exception.type"] == "RuntimeError"  # type: ignore[index]  # an exception event always has attributes
    assert last.status.status_code is StatusCode.ERROR
    assert last.status.description == f"dead-lettered: {REASON_MAX_ATTEMPTS}"
    assert last.attributes["eventwire.settlement"] == "dead-letter"  # type: ignore[index]  # a finished span's attributes are never None
    # The dead letter keeps the trace context of the publish that made the message.
    assert letter.headers["traceparent"].split("-")[2] == f"{span_id(publish):016x}"
