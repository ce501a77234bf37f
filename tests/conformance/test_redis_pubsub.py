"""Tests: the conformance suite against Redis Pub/Sub (the at-most-once profile)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from eventwire.testing.conformance import ConformanceSuite, Harness
from eventwire.testing.conformance.harness import URLHarness
from eventwire.testing.conformance.helpers import case_prefix
from eventwire.testing.spawn import ProcessHarness, scrubbed_keys, spawn_redis

pytestmark = [pytest.mark.conformance, pytest.mark.integration, pytest.mark.redis]

OPTIONS = "claim_idle=2&poll_interval=0.05&block=0.5&socket_timeout=3&publish_timeout=20"


class TestRedisPubSubConformance(ConformanceSuite):
    PROFILE = "redis-pubsub"

    @pytest.fixture
    async def harness(self, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
        private = request.node.get_closest_marker("reconnect") is not None or any(
            word in request.node.name for word in ("restart", "reconnect", "cut", "blackhole")
        )
        if private:
            async with spawn_redis() as server:
                url = f"redis+pubsub://{server.host}:{server.port}/0?{OPTIONS}"
                yield ProcessHarness(server, url)
        else:
            # Topics of this case in this run share a prefix: what it created is deleted after.
            pattern = f"ew:{case_prefix(request.node.name)}*"
            async with scrubbed_keys("redis://127.0.0.1:6379/0", pattern):
                yield URLHarness(f"redis+pubsub://127.0.0.1:6379/0?{OPTIONS}")
