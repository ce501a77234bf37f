"""Tests: the conformance suite against Apache Kafka (shared server; a private one for faults)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from conformance._kafka_harness import SharedKafkaHarness, private_kafka
from eventwire.brokers.kafka.broker import KafkaBroker
from eventwire.testing.conformance import ConformanceSuite, Harness

pytestmark = [pytest.mark.conformance, pytest.mark.integration, pytest.mark.kafka]


def needs_private_server(request: pytest.FixtureRequest) -> bool:
    """Restart and fault cases get a private Kafka: the shared one is never touched."""
    return request.node.get_closest_marker("reconnect") is not None or any(
        word in request.node.name for word in ("restart", "reconnect", "cut", "half_open")
    )


class TestKafkaConformance(ConformanceSuite):
    PROFILE = "kafka"

    @pytest.fixture
    async def harness(
        self, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
    ) -> AsyncIterator[Harness]:
        if needs_private_server(request):
            async with private_kafka() as private:
                yield private
            return
        harness = SharedKafkaHarness()
        connect = KafkaBroker._connect

        async def tracking(broker: KafkaBroker) -> None:
            harness.opened.append(broker)
            await connect(broker)

        monkeypatch.setattr(KafkaBroker, "_connect", tracking)
        yield harness
        await harness.aclose()
