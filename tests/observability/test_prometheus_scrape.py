"""Observability tests: a real, private Prometheus scrapes a worker's /metrics and a PromQL
query returns what the test expects: the processed count, and on every broker the lag after
publishing 500 and consuming 200 (300)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from eventwire import App
from eventwire.observability.http import OpsServer
from eventwire.runtime.serving import probes_of

from .lag_rig import cleaned, kind_params, new_worker, publish_consume_stop, url_for
from .probes import free_port, running, wait_until
from .prometheus_rig import prometheus, query

pytestmark = pytest.mark.slow


async def test_prometheus_scrapes_the_worker(tmp_path: Path) -> None:
    app = App(f"memory://prom-{free_port()}", name="scraped")

    @app.subscriber("scrape.events", group="workers")
    async def handle(payload: dict[str, Any]) -> None:
        return None

    async with app, running(app, http_port=0):
        for n in range(5):
            await app.publish("scrape.events", {"n": n})
        await wait_until(lambda: app.stats.processed == 5)
        assert app.http_port
        async with prometheus(tmp_path, app.http_port) as server:
            expression = 'eventwire_messages_processed_total{job="worker",group="workers"}'
            await server.value_of(expression, 5)
            found = await asyncio.to_thread(query, server.port, expression)
            assert found[0]["metric"]["handler"] == handle.__qualname__


@pytest.mark.parametrize("kind", kind_params())
async def test_prometheus_reads_consumed_and_lag_on_every_broker(kind: str, tmp_path: Path) -> None:
    worker = new_worker(url_for(kind, tmp_path), limit=200)
    app = worker.app
    # The endpoints outlive run(): the app is stopped after 200 (so nothing is held
    # unacknowledged anywhere) and stays connected, its lag reader still reading.
    async with cleaned(kind, worker), app, OpsServer(probes_of(app), port=0) as endpoints:
        await publish_consume_stop(worker, 500)
        async with prometheus(tmp_path, endpoints.port) as server:
            where = f'job="worker",topic="{worker.topic}",group="{worker.group}"'
            await server.value_of(f"eventwire_messages_processed_total{{{where}}}", 200)
            await server.value_of(f"eventwire_consumer_lag{{{where}}}", 300)
            published = f'eventwire_messages_published_total{{job="worker",topic="{worker.topic}"}}'
            await server.value_of(published, 500)
