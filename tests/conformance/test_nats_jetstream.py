"""Tests: the conformance suite against NATS JetStream (shared server; private one for restarts)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from conformance._nats_harness import NatsHarness, harness_for
from eventwire.testing.conformance import ConformanceSuite, Harness

pytestmark = [pytest.mark.conformance, pytest.mark.integration, pytest.mark.nats]


class TestNatsJetStreamConformance(ConformanceSuite):
    PROFILE = "nats-jetstream"

    @pytest.fixture
    async def harness(self, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
        async with harness_for(request, "nats", self.PROFILE) as harness:
            assert isinstance(harness, NatsHarness)
            yield harness
