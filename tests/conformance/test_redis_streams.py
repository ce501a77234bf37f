"""Tests: the conformance suite against Redis Streams (shared server; private one for faults)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from eventwire.testing.conformance import ConformanceSuite, Harness
from eventwire.testing.conformance.harness import URLHarness
from eventwire.testing.conformance.helpers import case_prefix
from eventwire.testing.spawn import ProcessHarness, scrubbed_keys, spawn_redis

pytestmark = [pytest.mark.conformance, pytest.mark.integration, pytest.mark.redis]

# Short claim/poll times so redelivery cases take well under a second per message.
OPTIONS = "claim_idle=2&poll_interval=0.05&block=0.5&socket_timeout=3&publish_timeout=20"


def needs_private_server(request: pytest.FixtureRequest) -> bool:
    """Reconnect/restart cases get a private redis-server: the shared one is never touched."""
    return request.node.get_closest_marker("reconnect") is not None or any(
        word in request.node.name for word in ("restart", "reconnect", "cut", "blackhole")
    )


class TestRedisStreamsConformance(ConformanceSuite):
    PROFILE = "redis-streams"

    @pytest.fixture
    async def harness(self, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
        if needs_private_server(request):
            # AOF with fsync always: acknowledged writes survive the SIGKILL of a restart.
            async with spawn_redis(appendonly=True) as server:
                yield ProcessHarness(server, f"redis://{server.host}:{server.port}/0?{OPTIONS}")
        else:
            # Topics of this case in this run share a prefix: what it created is deleted after.
            pattern = f"ew:{case_prefix(request.node.name)}*"
            async with scrubbed_keys("redis://127.0.0.1:6379/0", pattern):
                yield URLHarness(f"redis://127.0.0.1:6379/0?{OPTIONS}")
