"""Observability tests: each broker's lag reader reports publish - consume as the group's
backlog, creating nothing on the broker; ``/metrics`` renders it."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventwire.observability.lag import open_lag_reader

from .lag_rig import cleaned, kind_params, new_worker, publish_consume_stop, url_for, wait_for_lag

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
