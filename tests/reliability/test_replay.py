"""Tests: ``dlq replay`` replays each dead letter once, only to the group that failed it, with
its id kept; on every broker with dead letters (the shared services, one topic per test)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from eventwire import App, Context, PermanentError
from eventwire.brokers.catalog import open_broker
from eventwire.brokers.memory.broker import forget_hub
from eventwire.core import headers as h
from eventwire.core.message import Message
from eventwire.reliability.replay import list_dead_letters, replay_dead_letters
from eventwire.testing.app_runs import listed_dead_letters, serving, wait_until

BROKERS = ["memory", "sqlite", "redis", "nats", "rabbitmq"]
WAIT = 1.0  # seconds a replay or a listing waits for the next dead letter


@pytest.fixture(params=BROKERS)
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A broker URL private to this test; what the test created is deleted after it."""
    tag = uuid.uuid4().hex[:10]
    kind = request.param
    if kind == "memory":
        yield f"memory://replay-{tag}"
        forget_hub(f"replay-{tag}")
    elif kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'replay.db'}?poll=0.02"
    elif kind == "redis":
        from eventwire.testing.spawn import scrubbed_keys

        async with scrubbed_keys("redis://127.0.0.1:6379/0", f"ewr{tag}:*"):
            yield f"redis://127.0.0.1:6379/0?prefix=ewr{tag}:&claim_idle=2&block=0.5"
    elif kind == "nats":
        from brokers.nats.nats_support import delete_streams

        yield f"nats://127.0.0.1:4222?stream_prefix=EWR{tag}_&prefix=ewr{tag}"
        await delete_streams("127.0.0.1:4222", f"EWR{tag}_")
    else:
        from brokers.rabbitmq.rabbitmq_support import topology_removed

        async with topology_removed(f"ewr-{tag}"):  # delay levels included
            yield f"amqp://guest:guest@127.0.0.1:5672/?exchange=ewr-{tag}"


async def dead_letters(url: str, topic: str) -> list[Message]:
    return await listed_dead_letters(url, topic, wait=WAIT)


async def test_a_replay_on_a_still_failing_worker_sends_each_letter_once(url: str) -> None:
    # On main: 1 dead letter with --limit 50 gave "replayed 50" (it went round and round).
    topic = "orders"
    app = App(url, name="still-broken")
    calls: Counter[str] = Counter()

    @app.subscriber(topic, group="workers")
    async def handle(payload: dict[str, Any], ctx: Context) -> None:
        calls[ctx.message.id] += 1
        raise PermanentError("still broken")

    async with serving(app):
        sent = await app.publish(topic, {"n": 1})
        await wait_until(lambda: app.stats.dead_lettered == 1, deadline=30)
        async with open_broker(url) as broker:
            result = await replay_dead_letters(broker, topic, limit=50, wait=WAIT)
        await wait_until(lambda: app.stats.dead_lettered == 2, deadline=30)
    assert result.replayed == 1
    assert result.by_group == {"workers": 1}
    assert calls == {sent.id: 2}
    (left,) = await dead_letters(url, topic)
    assert left.id == sent.id
    assert left.headers[h.DLQ_GROUP] == "workers"


async def test_replay_goes_only_to_the_group_that_failed_it_with_its_id(url: str) -> None:
    # On main the replay went to every group (a, which had processed X, saw it again) and,
    # on SQLite and JetStream, with a new id.
    topic = "orders"
    app = App(url, name="two-groups")
    broken = {"a": True, "b": True}
    seen: dict[str, list[Message]] = {"a": [], "b": []}

    def handler(group: str, fails: set[str]) -> Any:
        async def handle(payload: dict[str, Any], ctx: Context) -> None:
            seen[group].append(ctx.message)
            if broken[group] and payload["name"] in fails:
                raise PermanentError(f"{group} cannot take {payload['name']}")

        return handle

    # X fails only in b; Z (a pub-sub poison message) fails in both: two dead letters.
    app.subscriber(topic, group="a")(handler("a", {"Z"}))
    app.subscriber(topic, group="b")(handler("b", {"X", "Z"}))
    async with serving(app):
        x = await app.publish(topic, {"name": "X"})
        z = await app.publish(topic, {"name": "Z"})
        await wait_until(lambda: app.stats.dead_lettered == 3, deadline=30)

        letters = await dead_letters(url, topic)
        assert sorted((m.id, m.headers[h.DLQ_GROUP]) for m in letters) == sorted(
            [(x.id, "b"), (z.id, "a"), (z.id, "b")]
        )
        broken.update(a=False, b=False)
        async with open_broker(url) as broker:
            result = await replay_dead_letters(broker, topic, limit=50, wait=WAIT)
        assert result.replayed == 3
        assert result.by_group == {"a": 1, "b": 2}

        # A marker published after the replay: once each group has seen it, every replay
        # addressed to it (or wrongly to it) has been handed out before (one handler each).
        marker = await app.publish(topic, {"name": "marker"})
        await wait_until(
            lambda: all(marker.id in {m.id for m in seen[g]} for g in ("a", "b")), deadline=30
        )

    ids = {g: Counter(m.id for m in seen[g]) for g in seen}
    assert ids["a"] == {x.id: 1, z.id: 2, marker.id: 1}
    assert ids["b"] == {x.id: 2, z.id: 2, marker.id: 1}
    replayed = [m for g in seen for m in seen[g] if h.REPLAY_RUN in m.headers]
    assert len(replayed) == 3
    for message in replayed:
        assert not [k for k in message.headers if k.startswith("x-eventwire-dlq-")]
    assert await dead_letters(url, topic) == []


async def test_dead_letters_of_a_replay_are_read_by_the_dlq_group(url: str) -> None:
    """The replay marks never hide a dead letter from the DLQ readers."""
    topic = "orders"
    marked = Message(body=b"{}", headers={h.REPLAY_GROUP: "workers"})
    async with open_broker(url) as broker, broker.subscribe(topic, group="workers") as deliveries:
        await broker.publish(topic, marked)
        async with asyncio.timeout(30):
            delivery = await anext(deliveries)
        await delivery.dead_letter("permanent-error")
    letters = await dead_letters(url, topic)
    assert [m.id for m in letters] == [marked.id]
    assert letters[0].headers[h.DLQ_ORIGINAL_TOPIC] == topic


async def _footprint(url: str, topic: str) -> object:
    """What exists on the broker for ``topic``'s DLQ: keys and consumers, streams, file."""
    if url.startswith("redis"):
        import redis.asyncio as aioredis

        prefix = url.split("prefix=")[1].split("&", maxsplit=1)[0]
        client = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
        try:
            keys = sorted([k async for k in client.scan_iter(match=f"{prefix}*")])
            key = f"{prefix}{topic}.dlq".encode()
            groups = await client.xinfo_groups(key) if key in keys else []
            consumers = [
                (g["name"], len(await client.xinfo_consumers(key, g["name"]))) for g in groups
            ]
            return keys, consumers
        finally:
            await client.aclose()
    if url.startswith("nats"):
        import nats

        prefix = url.split("stream_prefix=")[1].split("&", maxsplit=1)[0]
        nc = await nats.connect("nats://127.0.0.1:4222")
        try:
            js = nc.jetstream()
            out = []
            for info in await js.streams_info():
                name = info.config.name or ""
                if name.startswith(prefix):
                    out.append((name, sorted(c.name for c in await js.consumers_info(name))))
            return sorted(out)
        finally:
            await nc.close()
    return None


async def test_listing_dead_letters_changes_nothing(url: str) -> None:
    """``dlq list`` is a read: a typo creates no queue, stream, key or consumer, and listing
    leaves no consumer behind (on main each Redis listing left one in the DLQ group)."""
    if url.startswith(("memory", "amqp")):
        pytest.skip("memory keeps no outside state; RabbitMQ reads belong to its adapter")
    topic = "orders"
    app = App(url, name="lister")

    @app.subscriber(topic, group="workers")
    async def handle(payload: dict[str, Any]) -> None:
        raise PermanentError("no")

    async with serving(app):
        sent = await app.publish(topic, {"n": 1})
        await wait_until(lambda: app.stats.dead_lettered == 1, deadline=30)
    before = await _footprint(url, topic)
    for _ in range(3):
        assert [m.id for m in await dead_letters(url, topic)] == [sent.id]
    assert await _footprint(url, topic) == before
    typo: list[Message] = []
    assert (
        await list_dead_letters(
            open_broker(url), "orders.typo", limit=10, wait=WAIT, each=typo.append
        )
        is None
    )
    assert await _footprint(url, topic) == before
