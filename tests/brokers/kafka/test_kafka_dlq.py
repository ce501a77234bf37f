"""Tests: ``eventwire dlq list`` and ``dlq replay`` on the shared Kafka: the list is passive
(no topic, group member or committed offset appears), the replay goes to the group that
failed each letter, once; a typo creates nothing. Every topic a test made is deleted."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from typer.testing import CliRunner

from brokers.kafka.kafka_support import running, wait_until
from eventwire import App, Message, PermanentError
from eventwire.brokers.catalog import open_broker
from eventwire.brokers.kafka import topics
from eventwire.brokers.kafka.broker import KafkaBroker
from eventwire.cli.main import app as cli
from eventwire.core.message import DEAD_LETTER_GROUP, dead_letter_topic

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

URL = "kafka://127.0.0.1:9092"
BOOTSTRAP = "127.0.0.1:9092"
COUNT = 8
POISON = {2, 5}
runner = CliRunner()


def existing_topics() -> set[str]:
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    return set(admin.list_topics(timeout=10).topics)


@pytest.fixture
def topic() -> Iterator[str]:
    name = f"ewt.kafka.dlq.{uuid.uuid4().hex[:8]}"
    yield name
    made = [name, dead_letter_topic(name), *topics.retry_topics(name)]
    asyncio.run(_delete(made))


async def _delete(names: list[str]) -> None:
    broker = open_broker(URL)
    assert isinstance(broker, KafkaBroker)
    try:
        await broker.delete_topics(names)
    finally:
        await broker.aclose()


async def make_dead_letters(topic: str) -> dict[str, Message]:
    """Publish COUNT orders; the handler refuses those in POISON. Returns the refused ones."""
    app = App(URL, name="broken")

    @app.subscriber(topic, group="workers")
    async def handle(payload: dict[str, Any]) -> None:
        if payload["n"] in POISON:
            raise PermanentError(f"order {payload['n']} has no customer")

    sent: dict[str, Message] = {}
    async with app, running(app):
        for n in range(COUNT):
            message = await app.publish(topic, {"n": n}, key=f"k-{n}")
            if n in POISON:
                sent[message.id] = message
        await wait_until(
            lambda: (
                app.stats.dead_lettered == len(POISON)
                and app.stats.processed == COUNT - len(POISON)
            ),
            60,
            what="the refused orders dead-lettered, the others processed",
        )
    return sent


async def run_fixed(topic: str, expected: int) -> list[Message]:
    """The handler after the fix: takes everything; returns what it saw."""
    app = App(URL, name="fixed")
    seen: list[Message] = []

    @app.subscriber(topic, group="workers")
    async def handle(payload: dict[str, Any], ctx: Any) -> None:
        seen.append(ctx.message)

    async with app, running(app):
        await wait_until(lambda: len(seen) >= expected, 60, what="the replays handled")
    return seen


async def dlq_group_offsets(topic: str) -> list[int | None]:
    broker = open_broker(URL)
    assert isinstance(broker, KafkaBroker)
    try:
        return [
            lag.committed for lag in await broker.lag(dead_letter_topic(topic), DEAD_LETTER_GROUP)
        ]
    finally:
        await broker.aclose()


def invoke(*args: str) -> Any:
    return runner.invoke(cli, list(args))


def test_dlq_list_is_passive_and_replay_returns_each_letter_to_its_group(topic: str) -> None:
    refused = asyncio.run(make_dead_letters(topic))

    first = invoke("dlq", "list", topic, "-b", URL)
    second = invoke("dlq", "list", topic, "-b", URL)
    assert first.exit_code == 0, first.output
    assert first.stdout == second.stdout, "listing consumed dead letters"
    lines = first.stdout.splitlines()
    assert lines[-1] == f"{len(POISON)} dead letter(s) in {topic}.dlq, left in place"
    for message_id in refused:
        (line,) = [x for x in lines if x.startswith(message_id)]
        assert "group=workers" in line
        assert "reason=permanent-error" in line
        assert "has no customer" in line
    # Passive: the DLQ group never committed anything (it never even joined).
    assert asyncio.run(dlq_group_offsets(topic)) == [None] * 4

    replay = invoke("dlq", "replay", topic, "-b", URL)
    assert replay.exit_code == 0, replay.output
    assert replay.stdout.splitlines()[-1] == (
        f"replayed {len(POISON)} dead letter(s) from {topic}.dlq to {topic} "
        f"({len(POISON)} to group workers)"
    )
    after = invoke("dlq", "list", topic, "-b", URL)
    assert after.stdout.splitlines()[-1] == f"0 dead letter(s) in {topic}.dlq, left in place"
    seen = asyncio.run(run_fixed(topic, len(POISON)))
    assert sorted(m.id for m in seen) == sorted(refused)  # same ids, only the refused ones
    assert all(m.body == refused[m.id].body for m in seen)


def test_dlq_commands_on_a_missing_topic_create_nothing() -> None:
    typo = f"ewt.kafka.typo.{uuid.uuid4().hex[:8]}"
    listed = invoke("dlq", "list", typo, "-b", URL)
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.splitlines()[-1] == (
        f"no {typo}.dlq at {URL}: no dead letters (nothing was created)"
    )
    replayed = invoke("dlq", "replay", typo, "-b", URL)
    assert replayed.exit_code == 0, replayed.output
    assert replayed.stdout.splitlines()[-1].startswith(f"replayed 0 dead letter(s) from {typo}")
    assert not {t for t in existing_topics() if t.startswith(typo)}
