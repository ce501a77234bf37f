"""Observability tests: each broker's lag reader reports publish - consume as the group's
backlog, creating nothing on the broker; ``/metrics`` renders it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from eventwire import App
from eventwire.observability.lag import open_lag_reader

from .lag_rig import (
    FAST_WATCH,
    cleaned,
    kind_params,
    new_worker,
    publish_consume_stop,
    url_for,
    wait_for_lag,
)
from .probes import running, wait_until

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kind", kind_params())
async def test_lag_is_what_the_group_has_not_acknowledged(kind: str, tmp_path: Path) -> None:
    worker = new_worker(url_for(kind, tmp_path), limit=200)
    async with cleaned(kind, worker), worker.app:
        reader = open_lag_reader(worker.app.broker)
        assert reader is not None
        try:
            assert await reader.read(worker.topic, worker.group) is None, "no group yet"
            assert await reader.read(worker.topic, worker.group) is None, "reading made none"
        finally:
            await reader.aclose()
        await publish_consume_stop(worker, 500)
        assert worker.app.stats.processed == 200
        await wait_for_lag(worker.counters, 300)
        backlog = worker.counters.backlog
        assert backlog is not None
        if kind == "kafka":  # per partition, main topic and retry topics
            assert backlog.unacked is None
            assert sum(backlog.partitions.values()) == 300
            assert "0" in backlog.partitions
        elif kind != "rabbitmq":  # AMQP tells the ready count only
            assert backlog.unacked is not None
        text = worker.app.metrics.exposition()[0].decode()
        lines = [
            line
            for line in text.splitlines()
            if line.startswith("eventwire_consumer_lag{") and f'topic="{worker.topic}"' in line
        ]
        assert len(lines) == 1, text
        assert f'group="{worker.group}"' in lines[0]
        assert lines[0].endswith(" 300.0"), lines[0]


async def test_a_lane_stuck_behind_one_slow_key_shows_in_the_ages(tmp_path: Path) -> None:
    app = App(url_for("memory", tmp_path), name="slow-key", shutdown_timeout=1.0, watch=FAST_WATCH)
    release = asyncio.Event()

    @app.subscriber("slow.keys", group="workers", concurrency=4, ordered_by="key")
    async def handle(payload: dict[str, Any]) -> None:
        if payload["key"] == "stuck":
            await release.wait()

    def gauge(text: str, name: str) -> float:
        line = next(x for x in text.splitlines() if x.startswith(name + "{"))
        return float(line.rsplit(" ", 1)[1])

    async with app, running(app):
        await app.publish("slow.keys", {"key": "stuck"}, key="stuck")
        await app.publish("slow.keys", {"key": "stuck"}, key="stuck")  # waits behind it
        for n in range(20):
            await app.publish("slow.keys", {"key": f"k{n}"}, key=f"k{n}")
        await wait_until(lambda: app.stats.processed == 20)

        # Both stuck deliveries age, the running one and the one queued behind it.
        def aged() -> bool:
            text = app.metrics.exposition()[0].decode()
            running_age = gauge(text, "eventwire_oldest_unsettled_age_seconds")
            return running_age >= gauge(text, "eventwire_oldest_waiting_age_seconds") >= 0.3

        await wait_until(aged, deadline=10)
        await wait_until(
            lambda: (
                app._counters.subscribers[("slow.keys", "workers", handle.__qualname__)].backlog
                is not None
            )
        )
        assert gauge(app.metrics.exposition()[0].decode(), "eventwire_consumer_lag") == 2
        release.set()
        await wait_until(lambda: app.stats.processed == 22)
        text = app.metrics.exposition()[0].decode()
        assert gauge(text, "eventwire_oldest_unsettled_age_seconds") == 0.0
        assert gauge(text, "eventwire_oldest_waiting_age_seconds") == 0.0
