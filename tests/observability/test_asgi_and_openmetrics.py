"""Observability tests: ``app.asgi()`` serves the same endpoints to an ASGI host (httpx's
ASGI transport here, mounted under a prefix too), and ``/metrics`` answers in OpenMetrics
when asked (``Accept: application/openmetrics-text``, as Prometheus sends), on both servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from eventwire import App

from .probes import broker_url, http_get, running, wait_until

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def worker(url: str) -> App:
    app = App(url, name="asgi-test")

    @app.subscriber("asgi.events", group="workers")
    async def handle(payload: dict[str, Any]) -> None:
        return None

    return app


async def test_asgi_serves_the_endpoints(tmp_path: Path) -> None:
    app = worker(broker_url("memory", tmp_path))
    transport = httpx.ASGITransport(app=app.asgi())
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        assert (await client.get("/healthz")).status_code == 503  # not connected yet
        async with app:
            answer = await client.get("/readyz")
            assert answer.status_code == 503
            assert answer.text.startswith("not ready: subscriptions not established")
            async with running(app):
                await app.publish("asgi.events", {"n": 1})
                await wait_until(lambda: app.stats.processed == 1)
                assert (await client.get("/readyz")).text == "ready\n"
                assert (await client.get("/healthz")).status_code == 200
                metrics = await client.get("/metrics")
                assert metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
                assert "eventwire_messages_processed_total{" in metrics.text
                assert metrics.headers["cache-control"] == "no-store"
                assert (await client.head("/metrics")).content == b""
                assert (await client.get("/nope")).status_code == 404
                assert (await client.post("/metrics")).status_code == 405


async def test_asgi_under_a_mount_prefix(tmp_path: Path) -> None:
    app = worker(broker_url("memory", tmp_path))
    transport = httpx.ASGITransport(app=app.asgi(), root_path="/ops")
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://svc") as client,
        app,
        running(app),
    ):
        assert (await client.get("/ops/readyz")).text == "ready\n"


async def test_openmetrics_on_request_on_both_servers(tmp_path: Path) -> None:
    app = worker(broker_url("memory", tmp_path))
    transport = httpx.ASGITransport(app=app.asgi())
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://svc") as client,
        app,
        running(app, http_port=0),
    ):
        await app.publish("asgi.events", {"n": 1})
        await wait_until(lambda: app.stats.processed == 1)
        assert app.http_port
        status, content_type, body = await http_get(
            app.http_port, "/metrics", accept=PROMETHEUS_ACCEPT
        )
        via_asgi = await client.get("/metrics", headers={"accept": PROMETHEUS_ACCEPT})
        for kind, text in (
            (content_type, body.decode()),
            (via_asgi.headers["content-type"], via_asgi.text),
        ):
            assert kind.startswith("application/openmetrics-text; version=1.0.0")
            assert text.endswith("# EOF\n")
            # prometheus_client's OpenMetrics parser is the one module of it left unannotated.
            parsed = text_string_to_metric_families(text)  # type: ignore[no-untyped-call]
            families = {f.name: f for f in parsed}
            processed = families["eventwire_messages_processed"]
            assert processed.type == "counter"
            assert [s.value for s in processed.samples if s.name.endswith("_total")] == [1.0]
            assert "eventwire_oldest_unsettled_age_seconds" in families
        assert status == 200
        plain = await http_get(app.http_port, "/metrics", accept="text/plain")
        assert plain[1] == "text/plain; version=0.0.4; charset=utf-8"
        assert not plain[2].endswith(b"# EOF\n")
