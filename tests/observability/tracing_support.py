"""Tests: what the tracing and log tests share: a traced span exporter, a JSON log capture,
the three-service chain A -> B -> C, and the clean-up of what a broker run created."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import baggage, context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from eventwire.brokers.catalog import profile_for
from eventwire.core.message import DEAD_LETTER_GROUP, Message, dead_letter_topic
from eventwire.core.url import BrokerURL
from eventwire.observability import tracing
from eventwire.observability.logs import JsonFormatter
from eventwire.reliability.retry import RetryPolicy
from eventwire.runtime.app import App
from eventwire.runtime.context import Context
from eventwire.testing.services import service_url
from runtime.helpers import running, wait_until

# Catalog profile -> the shared service it runs on (None: embedded) and its URL scheme.
PROFILES: dict[str, tuple[str | None, str]] = {
    "memory": (None, "memory"),
    "sqlite": (None, "sqlite"),
    "rabbitmq": ("rabbitmq", "amqp"),
    "kafka": ("kafka", "kafka"),
    "redis-streams": ("redis", "redis"),
    "redis-pubsub": ("redis", "redis+pubsub"),
    "nats-jetstream": ("nats", "nats"),
    "nats-core": ("nats", "nats+core"),
}
SYSTEM = {
    "memory": "memory",
    "sqlite": "sqlite",
    "rabbitmq": "rabbitmq",
    "kafka": "kafka",
    "redis-streams": "redis",
    "redis-pubsub": "redis",
    "nats-jetstream": "nats",
    "nats-core": "nats",
}


def on_profiles(*names: str) -> pytest.MarkDecorator:
    """Parametrize ``profile`` over ``names``, each marked with the service it needs."""
    params = []
    for name in names:
        service = PROFILES[name][0]
        marks = [] if service is None else [pytest.mark.integration, getattr(pytest.mark, service)]
        params.append(pytest.param(name, marks=marks, id=name))
    return pytest.mark.parametrize("profile", params)


FAST_RETRY = RetryPolicy(max_attempts=2, initial_delay=0.05, max_delay=0.05, jitter=0.0)


@contextmanager
def traced() -> Iterator[InMemorySpanExporter]:
    """Tracing on (``instrument`` with an SDK provider exporting into memory), then off."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.instrument(provider)
    try:
        yield exporter
    finally:
        tracing.uninstrument()
        provider.shutdown()


@contextmanager
def json_lines(level: int = logging.INFO) -> Iterator[list[dict[str, Any]]]:
    """Every ``eventwire`` log record meanwhile, formatted by ``JsonFormatter`` and parsed
    back (one JSON object per line): the list fills as the lines are written."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("eventwire")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    lines: list[dict[str, Any]] = []

    class Parsed(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = stream.getvalue()
            stream.seek(0)
            stream.truncate()
            lines.extend(json.loads(line) for line in text.splitlines())

    parsed = Parsed()
    logger.addHandler(parsed)  # after ``handler``: parses what it has just written
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.removeHandler(parsed)
        logger.setLevel(old_level)


def url_of(profile: str, token: str, tmp_path: Path) -> str:
    service, scheme = PROFILES[profile]
    if service is None:
        return f"memory://{token}" if scheme == "memory" else f"sqlite:///{tmp_path}/b.db?poll=0.02"
    return scheme + service_url(service)[service_url(service).index("://") :]


def new_token(profile: str) -> str:
    # e2e_ and the profile: the shared-server purge naming rule (tests/setup/setup_helpers)
    return f"e2e_trace_{profile.replace('-', '_')}{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def cleaned(profile: str, url: str, token: str) -> AsyncIterator[set[str]]:
    """Run the body, then delete what it created on a shared server: the RabbitMQ queues,
    Redis keys and JetStream streams whose name carries ``token``, and the Kafka topics put
    in the yielded set."""
    created: set[str] = set()
    try:
        yield created
    finally:
        await asyncio.wait_for(_delete(PROFILES[profile][0], url, token, created), 60)


@asynccontextmanager
async def serving(created: set[str], *apps: App) -> AsyncIterator[None]:
    """The apps connected and running; the topics their adapters created go in ``created``
    (Kafka) before they close, however the body ends."""
    async with contextlib.AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(app)
        try:
            for app in apps:
                await stack.enter_async_context(running(app))
            yield
        finally:
            for app in apps:
                created.update(getattr(app.broker, "created_topics", ()))


async def _delete(service: str | None, url: str, token: str, topics: set[str]) -> None:
    from setup.setup_helpers import purge_nats, purge_rabbitmq, purge_redis, rabbitmq_listed_queues

    match = re.compile(re.escape(token))
    if service == "rabbitmq":
        await purge_rabbitmq(url, rabbitmq_listed_queues(match))
    elif service == "redis":
        await purge_redis(service_url("redis"), match)
    elif service == "nats":
        await purge_nats(service_url("nats"), match)
    elif service == "kafka" and topics:
        from eventwire.brokers.catalog import open_broker
        from eventwire.brokers.kafka.broker import KafkaBroker

        admin = open_broker(url)
        assert isinstance(admin, KafkaBroker)
        try:
            await admin.delete_topics(sorted(topics))
        finally:
            await admin.aclose()


@dataclass
class Chain:
    """What the chain run saw: the three messages, in order, and what C's handler found."""

    topics: tuple[str, str, str]
    messages: list[Message] = field(default_factory=list)
    baggage_in_c: object = None
    attempts_in_b: list[int] = field(default_factory=list)


def group_of(url: str, name: str) -> str | None:
    """``name``, or None (broadcast) on a profile without consumer groups."""
    return name if profile_for(BrokerURL.parse(url)).capabilities.consumer_groups else None


async def run_chain(url: str, token: str, created: set[str]) -> Chain:
    """A takes a request (topic 0) and publishes an order (topic 1); B fails its first
    attempt, then bills it and publishes an invoice (topic 2); C handles that. A sets
    baggage before publishing."""
    topics = (f"{token}.requests", f"{token}.orders", f"{token}.invoices")
    chain = Chain(topics=topics)
    a, b, c = (App(url, name=f"{token}-{n}") for n in "abc")
    done = asyncio.Event()

    @a.subscriber(topics[0], group=group_of(url, f"{token}-a"))
    async def accept(request: dict[str, Any], ctx: Context) -> None:
        chain.messages.append(ctx.message)
        ctx.logger.info("order accepted")
        await ctx.publish(topics[1], {"order_id": request["order_id"], "amount": 42})

    @b.subscriber(topics[1], group=group_of(url, f"{token}-b"), retry=FAST_RETRY)
    async def bill(order: dict[str, Any], ctx: Context) -> None:
        chain.attempts_in_b.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("ledger busy")  # the runtime logs the retry
        chain.messages.append(ctx.message)
        ctx.logger.info("order billed")
        await ctx.publish(topics[2], {"order_id": order["order_id"], "invoice": "i-1"})

    @c.subscriber(topics[2], group=group_of(url, f"{token}-c"))
    async def notify(invoice: dict[str, Any], ctx: Context) -> None:
        chain.messages.append(ctx.message)
        chain.baggage_in_c = baggage.get_baggage("tenant")
        ctx.logger.info("customer notified")
        done.set()

    async with serving(created, a, b, c):
        attached = context.attach(baggage.set_baggage("tenant", "acme"))
        try:
            await a.publish(topics[0], {"order_id": "o-1"}, correlation_id=f"req-{token}")
        finally:
            context.detach(attached)
        await asyncio.wait_for(done.wait(), 60)
    return chain


async def run_dead_letter(url: str, token: str, created: set[str], *, in_place: bool) -> Message:
    """One message whose handler always fails: attempt 1 retried, attempt 2 dead-lettered
    (``in_place``: ordered_by, so the retry happens inside one handling). Returns the dead
    letter, read from the DLQ once the app has counted it."""
    topic = f"{token}.payments"
    app = App(url, name=f"{token}-pay")

    @app.subscriber(
        topic,
        group=group_of(url, f"{token}-pay"),
        retry=FAST_RETRY,
        ordered_by="account" if in_place else None,
    )
    async def pay(payment: dict[str, Any]) -> None:
        raise RuntimeError("card declined")

    async with serving(created, app):
        await app.publish(topic, {"account": "acc-1", "amount": 5})
        await wait_until(lambda: app.stats.dead_lettered == 1, deadline=60)
        async with (
            asyncio.timeout(30),
            app.broker.subscribe(dead_letter_topic(topic), group=DEAD_LETTER_GROUP) as letters,
        ):
            async for delivery in letters:
                await delivery.ack()
                return delivery.message
    raise AssertionError("no dead letter")


def by_name(spans: tuple[ReadableSpan, ...], token: str) -> dict[str, list[ReadableSpan]]:
    """This run's spans by name (``publish <topic>``, ``process <topic>``), in end order."""
    out: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        if token in span.name:
            out.setdefault(span.name.replace(f"{token}.", ""), []).append(span)
    return out
