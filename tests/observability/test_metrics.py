"""Observability tests: an app's metrics after real processing, read from its registry and
scraped from /metrics over a socket, on the memory and SQLite brokers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from eventwire import App, Message, RetryPolicy
from eventwire.observability.counters import AppCounters
from eventwire.observability.metrics import MetricsRecorder

from .probes import broker_url, http_get, running, wait_until

COUNT = 12
POISON = 3  # index of the message whose handler always fails
FAST_RETRY = RetryPolicy(max_attempts=2, initial_delay=0.001, max_delay=0.005, jitter=0.0)


def recorder(app: App) -> MetricsRecorder:
    assert isinstance(app.metrics, MetricsRecorder), "prometheus_client is installed in dev"
    return app.metrics


def sample(app: App, name: str, **labels: str) -> float | None:
    return recorder(app).registry.get_sample_value(name, labels)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_counters_histograms_and_scrape_after_a_poison(kind: str, tmp_path: Path) -> None:
    app = App(broker_url(kind, tmp_path), name="metrics-test")
    topic = f"orders.{kind}"

    @app.subscriber(topic, group="workers", retry=FAST_RETRY)
    async def handle(payload: dict[str, Any]) -> None:
        if payload["n"] == POISON:
            raise ValueError("poison")

    @app.subscriber(f"{topic}.once", group="dedupe", idempotent=True)
    async def once(payload: dict[str, Any]) -> None:
        return None

    async with app, running(app, http_port=0):
        # SQLite drops a second publish of one id itself: nothing left for the app to dedupe.
        duplicates = 0 if app.broker.profile.capabilities.publish_dedup else 1
        for n in range(COUNT):
            await app.publish(topic, {"n": n})
        twice = Message(body=b'{"n": 1}', content_type="application/json")
        await app.publish(f"{topic}.once", twice)
        await app.publish(f"{topic}.once", twice)
        await wait_until(
            lambda: (
                app.stats.processed == COUNT  # COUNT - 1 + the first `twice`
                and app.stats.dead_lettered == 1
                and app.stats.duplicates_suppressed == duplicates
            )
        )
        port = app.http_port
        assert port
        status, content_type, body = await http_get(port, "/metrics")

    labels = {"topic": topic, "group": "workers", "handler": handle.__qualname__}
    assert sample(app, "eventwire_messages_processed_total", **labels) == COUNT - 1
    assert sample(app, "eventwire_messages_failed_total", **labels) == 2  # two attempts
    assert sample(app, "eventwire_messages_retried_total", **labels) == 1
    dead = {**labels, "reason": "max-attempts"}
    assert sample(app, "eventwire_messages_dead_lettered_total", **dead) == 1
    assert sample(app, "eventwire_handler_duration_seconds_count", **labels) == COUNT + 1
    assert sample(app, "eventwire_handlers_in_flight", **labels) == 0
    once_labels = {"topic": f"{topic}.once", "group": "dedupe", "handler": once.__qualname__}
    assert (
        sample(app, "eventwire_messages_duplicates_suppressed_total", **once_labels) == duplicates
    )
    assert sample(app, "eventwire_messages_published_total", topic=topic) == COUNT
    assert sample(app, "eventwire_publish_duration_seconds_count", topic=topic) == COUNT

    # The same figures over a real socket, in the text format Prometheus parses.
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    scraped = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    assert scraped["eventwire_messages_processed_total", tuple(sorted(labels.items()))] == 11
    assert scraped["eventwire_messages_dead_lettered_total", tuple(sorted(dead.items()))] == 1
    inf = tuple(sorted({**labels, "le": "+Inf"}.items()))
    assert scraped["eventwire_handler_duration_seconds_bucket", inf] == COUNT + 1  # 11 + 2 fails


async def test_each_app_has_its_own_registry() -> None:
    first, second = App("memory://"), App("memory://")
    async with first, second:
        await first.publish("t.a", {"n": 1})
        await second.publish("t.a", {"n": 1})
        await second.publish("t.a", {"n": 2})
    assert sample(first, "eventwire_messages_published_total", topic="t.a") == 1
    assert sample(second, "eventwire_messages_published_total", topic="t.a") == 2
    assert recorder(first).registry is not recorder(second).registry


NO_PROMETHEUS = textwrap.dedent(
    """
    import asyncio, sys
    sys.modules["prometheus_client"] = None  # as if the `metrics` extra were not installed
    from eventwire import App

    app = App("memory://")
    seen = []

    @app.subscriber("t", group="g")
    async def handle(payload: dict) -> None:
        seen.append(payload)

    async def main() -> None:
        stop = asyncio.Event()
        async with app:
            task = asyncio.create_task(app.run(stop))
            await app.wait_ready()
            await app.publish("t", {"n": 1})
            while app.stats.processed < 1:
                await asyncio.sleep(0.01)
            stop.set()
            await task

    asyncio.run(asyncio.wait_for(main(), 20))
    text, _ = app.metrics.exposition()
    print(type(app.metrics).__name__, app.stats.processed, text.decode().strip())
    assert "prometheus_client" not in sys.modules or sys.modules["prometheus_client"] is None
    """
)


def test_runtime_works_without_prometheus_client() -> None:
    done = subprocess.run(
        [sys.executable, "-c", NO_PROMETHEUS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("NoopRecorder 1 # metrics are off"), done.stdout
    assert "pip install 'eventwire[metrics]'" in done.stdout


def test_import_and_app_creation_do_not_import_prometheus_client() -> None:
    code = (
        "import sys\nfrom eventwire import App\nApp('memory://')\n"
        "print('prometheus_client' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


async def test_recording_is_cheap() -> None:
    # Guard against a slow observer sneaking in; generous so a busy CI host passes.
    metrics = AppCounters().subscriber("t", "g", "h")
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(100_000):
        metrics.handler_finished(metrics.handler_started())
        metrics.processed()
    assert loop.time() - started < 1.0  # about 0.03 s on the dev machine
