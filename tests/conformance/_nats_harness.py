"""Tests: conformance harnesses for the NATS profiles (shared server, or a private one)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import nats
import pytest

from eventwire.brokers.catalog import profile_named
from eventwire.core.contract import Broker
from eventwire.testing.conformance import Harness
from eventwire.testing.conformance.context import RESTART, requirements_of
from eventwire.testing.conformance.harness import open_connected, rewrite_host
from eventwire.testing.spawn_nats import NatsServer

SHARED = "127.0.0.1:4222"
# Short AckWait/pull expiry so redelivery after a lost consumer shows within seconds.
OPTIONS = "ack_wait=3&publish_timeout=20&max_age=3600"


class NatsHarness(Harness):
    """Clients of one NATS server; streams get a per-harness prefix and are deleted after."""

    def __init__(self, scheme: str, profile: str, hostport: str, server: NatsServer | None) -> None:
        self.profile = profile_named(profile)
        self.server = server
        self.stream_prefix = f"EWT{uuid.uuid4().hex[:8]}_"
        self.supports_restart = server is not None
        host, port = hostport.split(":")
        self.upstream: tuple[str, int] = (host, int(port))
        self._url = f"{scheme}://{hostport}?{OPTIONS}&stream_prefix={self.stream_prefix}"

    async def open(self) -> Broker:
        return await open_connected(self._url)

    async def restart_broker(self) -> None:
        assert self.server is not None, "never restart the shared server"
        await self.server.restart()

    def url_via(self, host: str, port: int) -> str:
        return rewrite_host(self._url, host, port)

    async def aclose(self) -> None:
        """Delete the streams this harness's clients created, so the shared server stays lean."""
        host, port = self.upstream
        with contextlib.suppress(Exception):
            nc = await nats.connect(f"nats://{host}:{port}", max_reconnect_attempts=1)
            try:
                js = nc.jetstream()
                for info in await js.streams_info():
                    if info.config.name and info.config.name.startswith(self.stream_prefix):
                        await js.delete_stream(info.config.name)
            finally:
                await nc.close()


@contextlib.asynccontextmanager
async def harness_for(
    request: pytest.FixtureRequest, scheme: str, profile: str
) -> AsyncIterator[Harness]:
    """The shared server, or a private ``nats-server -js`` for restart/reconnect cases."""
    name = request.node.name
    needs = requirements_of(getattr(request, "function", None))
    if RESTART in needs or "restart" in name or "reconnect" in name:
        async with NatsServer(jetstream=scheme != "nats+core") as server:
            harness = NatsHarness(scheme, profile, f"127.0.0.1:{server.port}", server)
            yield harness
            await harness.aclose()
        return
    harness = NatsHarness(scheme, profile, SHARED, None)
    try:
        yield harness
    finally:
        await harness.aclose()
