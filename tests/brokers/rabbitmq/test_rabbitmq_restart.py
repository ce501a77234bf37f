"""Tests: the conformance restart cases on a private RabbitMQ node killed (SIGKILL) and restarted.

The shared server must never be restarted, so these cases get their own node on free ports;
every other conformance case runs against the shared server in tests/conformance.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from rabbitmq_node import PrivateRabbitMQ, available

from eventwire.brokers.catalog import profile_named
from eventwire.core.contract import Broker
from eventwire.testing.conformance import ConformanceSuite, Harness
from eventwire.testing.conformance.harness import open_connected

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.integration,
    pytest.mark.rabbitmq,
    pytest.mark.reconnect,
    pytest.mark.slow,
    pytest.mark.skipif(not available(), reason="rabbitmq-server is not installed here"),
]


class PrivateNodeHarness(Harness):
    """Clients of a private node that ``restart_broker`` kills and starts on the same data."""

    supports_restart = True

    def __init__(self, node: PrivateRabbitMQ) -> None:
        self.profile = profile_named("rabbitmq")
        self.node = node
        self.url = f"{node.url}?exchange=ewr-{uuid.uuid4().hex[:8]}&publish_timeout=30"

    async def open(self) -> Broker:
        return await open_connected(self.url)

    async def restart_broker(self) -> None:
        await self.node.restart()


class TestRabbitMQRestartConformance(ConformanceSuite):
    PROFILE = "rabbitmq"

    @pytest.fixture
    async def harness(self, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
        if "restart" not in request.node.name:
            pytest.skip("runs on the shared server in tests/conformance/test_rabbitmq.py")
        async with PrivateRabbitMQ() as node:
            yield PrivateNodeHarness(node)
