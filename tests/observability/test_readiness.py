"""Observability tests: /readyz turns 503 within 15 s of losing the broker (a fault proxy
refuses new connections and resets the open ones) and 200 again after it heals, with the
default ``WatchPolicy``; the lag reader counts its failed reads meanwhile and reads again."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from eventwire import App
from eventwire.observability.lag import LagPolicy
from eventwire.runtime.watching import WatchPolicy
from eventwire.testing.fault_proxy import FaultProxy

from .lag_rig import removed
from .probes import http_get, running

pytestmark = [pytest.mark.integration, pytest.mark.reconnect, pytest.mark.slow]

LOST_WITHIN = 15.0  # seconds, what the issue asks
BACK_WITHIN = 60.0  # reconnect backoff (capped at 5 s by default) plus one health period


async def readyz(port: int) -> int:
    return (await http_get(port, "/readyz"))[0]


async def seconds_until(port: int, status: int, deadline: float) -> float:
    started = time.monotonic()
    async with asyncio.timeout(deadline):
        while await readyz(port) != status:
            await asyncio.sleep(0.1)
    return time.monotonic() - started


@pytest.mark.parametrize(
    ("kind", "upstream", "url"),
    [
        pytest.param(
            "redis-streams", 6379, "redis://{host}:{port}/0", marks=pytest.mark.redis, id="redis"
        ),
        pytest.param(
            "rabbitmq",
            5672,
            "amqp://guest:guest@{host}:{port}/",
            marks=pytest.mark.rabbitmq,
            id="rabbitmq",
        ),
        pytest.param(
            "nats-jetstream",
            4222,
            "nats://{host}:{port}",
            marks=pytest.mark.nats,
            id="nats-jetstream",
        ),
    ],
)
async def test_readiness_follows_the_broker(kind: str, upstream: int, url: str) -> None:
    async with FaultProxy("127.0.0.1", upstream) as proxy, removed(kind, f"ready.t{proxy.port}"):
        # Default health checks (every 5 s, 5 s timeout); lag read every second.
        watch = WatchPolicy(lag=LagPolicy(every=1.0, timeout=2.0))
        app = App(url.format(host=proxy.host, port=proxy.port), name="ready", watch=watch)

        @app.subscriber(f"ready.t{proxy.port}", group="workers")
        async def handle(payload: dict[str, Any]) -> None:
            return None

        async with app, running(app, http_port=0):
            port = app.http_port
            assert port
            assert await readyz(port) == 200
            sub = next(iter(app._counters.subscribers.values()))
            async with asyncio.timeout(20):
                while sub.backlog is None:  # the reader got through once
                    await asyncio.sleep(0.05)

            proxy.refuse()
            await proxy.cut()
            lost = await seconds_until(port, 503, LOST_WITHIN)
            body = (await http_get(port, "/readyz"))[2]
            assert body.startswith(b"not ready: broker unhealthy"), body
            failures = sub.lag_read_failures
            async with asyncio.timeout(20):
                while sub.lag_read_failures == failures or sub.backlog is not None:
                    await asyncio.sleep(0.05)  # failed reads are counted, the stale lag gone

            proxy.heal()
            back = await seconds_until(port, 200, BACK_WITHIN)
            async with asyncio.timeout(20):
                while sub.backlog is None:
                    await asyncio.sleep(0.05)
        print(f"readiness lost after {lost:.1f} s, back {back:.1f} s after heal")
