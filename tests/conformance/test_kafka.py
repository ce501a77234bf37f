"""Tests: the conformance suite against Apache Kafka (shared server; a private one for faults)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from eventwire.brokers.catalog import open_broker
from eventwire.brokers.kafka.broker import KafkaBroker
from eventwire.testing.conformance import ConformanceSuite, Harness
from eventwire.testing.conformance.harness import URLHarness

pytestmark = [pytest.mark.conformance, pytest.mark.integration, pytest.mark.kafka]

SHARED = "kafka://127.0.0.1:9092"


class SharedKafkaHarness(URLHarness):
    """The shared Kafka: no fault proxy in front of it (its advertised listener would bypass
    one) and never restarted; every topic its clients created is deleted afterwards."""

    def __init__(self) -> None:
        super().__init__(SHARED)
        self.upstream = None
        self.opened: list[KafkaBroker] = []

    async def aclose(self) -> None:
        await delete_created_topics(SHARED, self.opened)


async def delete_created_topics(url: str, brokers: list[KafkaBroker]) -> None:
    """Delete what ``brokers`` created on ``url`` (shared server hygiene)."""
    created = sorted({t for b in brokers for t in b.created_topics})
    if not created:
        return
    admin = open_broker(url)
    assert isinstance(admin, KafkaBroker)
    try:
        await admin.delete_topics(created)
    finally:
        await admin.aclose()


class TestKafkaConformance(ConformanceSuite):
    PROFILE = "kafka"

    @pytest.fixture
    async def harness(self, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
        harness = SharedKafkaHarness()
        connect = KafkaBroker._connect

        async def tracking(broker: KafkaBroker) -> None:
            harness.opened.append(broker)
            await connect(broker)

        monkeypatch.setattr(KafkaBroker, "_connect", tracking)
        yield harness
        await harness.aclose()
