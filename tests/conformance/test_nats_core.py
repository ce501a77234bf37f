"""Tests: the conformance suite against core NATS (shared server; private one for restarts)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from conformance._nats_harness import NatsHarness, harness_for
from eventwire.testing.conformance import ConformanceSuite, Harness

pytestmark = [pytest.mark.conformance, pytest.mark.integration, pytest.mark.nats]


class TestNatsCoreConformance(ConformanceSuite):
    PROFILE = "nats-core"

    @pytest.fixture
    async def harness(self, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
        async with harness_for(request, "nats+core", self.PROFILE) as harness:
            assert isinstance(harness, NatsHarness)
            yield harness
