"""Tests: the conformance restart cases on a private RabbitMQ node killed (SIGKILL) and restarted.

The shared server must never be restarted, so these cases get their own node on free ports;
every other conformance case runs against the shared server in tests/conformance.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import pytest

from brokers.rabbitmq.rabbitmq_node import PrivateRabbitMQ, available
from eventwire.brokers.catalog import open_broker, profile_named
from eventwire.core.contract import Broker
from eventwire.core.message import Message
from eventwire.testing.conformance import ConformanceSuite, Harness
from eventwire.testing.conformance.harness import open_connected
from eventwire.testing.fault_proxy import FaultProxy

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


CANARY = "canary-Pw-91c2ab"


async def test_canary_password_absent_through_cuts_and_failed_reconnects(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with PrivateRabbitMQ() as node:
        await node.ctl("add_user", "canary", CANARY)
        await node.ctl("set_permissions", "canary", ".*", ".*", ".*")
        async with FaultProxy("127.0.0.1", node.port) as proxy:
            url = f"amqp://canary:{CANARY}@127.0.0.1:{proxy.port}/?exchange=ewr-canary"
            broker = open_broker(url)
            seen = [repr(broker), str(broker.url), repr(broker.url)]
            async with broker, broker.subscribe("canary.t", group="g") as sub:
                proxy.refuse()
                await proxy.cut()  # connection lost, and reconnects fail for a while
                async with asyncio.timeout(10):
                    while "failed" not in caplog.text:  # a failed reconnect got logged
                        await asyncio.sleep(0.05)
                proxy.heal()
                message = Message(body=b"after")
                await broker.publish("canary.t", message)
                async with asyncio.timeout(15):
                    got = await anext(sub)
                assert got.message.id == message.id
                await got.ack()
                seen += [repr(broker), str(await broker.health())]
    seen += [r.getMessage() for r in caplog.records] + [caplog.text]
    assert any("reconnect" in text for text in seen)
    assert sum(text.count(CANARY) for text in seen) == 0
