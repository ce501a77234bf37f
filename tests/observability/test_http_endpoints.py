"""Observability tests: /healthz and /readyz follow the app and its broker; the server's edges."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from eventwire import App, ConfigurationError
from eventwire.observability.http import OpsServer, Probes
from eventwire.reliability.circuit_breaker import BreakerPolicy

from .probes import broker_url, free_port, http_get, running


def worker(url: str) -> App:
    app = App(url, name="probe-test")

    @app.subscriber("probe.events", group="workers")
    async def handle(payload: dict[str, Any]) -> None:
        return None

    return app


def server_for(app: App) -> OpsServer:
    probes = Probes(metrics=app.metrics.exposition, health=app.health, ready=lambda: app.ready)
    return OpsServer(probes, port=0)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_ready_and_healthy_transitions(kind: str, tmp_path: Path) -> None:
    app = worker(broker_url(kind, tmp_path))
    async with server_for(app) as server:
        port = server.port
        assert (await http_get(port, "/healthz"))[0] == 503  # not connected yet
        async with app:
            status, _, body = await http_get(port, "/healthz")
            assert (status, body[:3]) == (200, b"ok:")
            status, _, body = await http_get(port, "/readyz")
            assert status == 503, "connected but not subscribed: not ready"
            assert body.startswith(b"not ready")
            async with running(app):
                assert await http_get(port, "/readyz") == (
                    200,
                    "text/plain; charset=utf-8",
                    b"ready\n",
                )
            assert (await http_get(port, "/readyz"))[0] == 503  # stopped consuming
            await app.broker.aclose()
            status, _, body = await http_get(port, "/healthz")
            assert status == 503
            assert body == b"unhealthy: closed\n"


async def test_run_serves_the_endpoints_only_while_running(tmp_path: Path) -> None:
    app = worker(broker_url("memory", tmp_path))
    async with app, running(app, http_port=0):
        port = app.http_port
        assert port
        assert (await http_get(port, "/readyz"))[0] == 200
        assert (await http_get(port, "/healthz"))[0] == 200
        assert (await http_get(port, "/metrics", method="HEAD"))[0] == 200
        assert (await http_get(port, "/nope"))[0] == 404
        assert (await http_get(port, "/metrics", method="POST"))[0] == 405
    assert app.http_port is None
    with pytest.raises(OSError, match=r"refused|Connect call failed"):
        await asyncio.open_connection("127.0.0.1", port)


async def test_a_taken_port_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = worker(broker_url("memory", tmp_path))
        with pytest.raises(ConfigurationError) as caught:
            await app.run(asyncio.Event(), http_port=port)
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert "already in use" in message
    assert "\n" not in message
    assert app.http_port is None


async def test_a_silent_or_garbled_client_does_not_stop_the_server() -> None:
    async def healthy() -> Any:
        from eventwire import Health

        return Health(ok=True, detail="fine")

    probes = Probes(metrics=lambda _accept: (b"", "text/plain"), health=healthy, ready=lambda: True)
    async with OpsServer(probes, port=free_port()) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"garbage\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 400 ")
        writer.close()
        _, idle = await asyncio.open_connection("127.0.0.1", server.port)
        idle.close()  # went away without a request
        assert (await http_get(server.port, "/healthz"))[2] == b"ok: fine\n"


async def test_readyz_names_an_open_breaker() -> None:
    app = App(f"memory://breaker-{free_port()}", name="breaker")

    @app.subscriber(
        "breaker.events", group="workers", breaker=BreakerPolicy(failure_threshold=1, open_for=30)
    )
    async def handle(payload: dict[str, Any]) -> None:
        raise RuntimeError("downstream is down")

    async with app, running(app, http_port=0):
        port = app.http_port
        assert port
        assert (await http_get(port, "/readyz"))[0] == 200
        await app.publish("breaker.events", {"n": 1})
        async with asyncio.timeout(10):
            while (await http_get(port, "/readyz"))[0] != 503:
                await asyncio.sleep(0.05)
        body = (await http_get(port, "/readyz"))[2].decode()
        assert body.startswith("not ready: the circuit breaker of "), body
        assert "on breaker.events is open" in body
