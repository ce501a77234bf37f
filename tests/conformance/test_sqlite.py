"""Tests: the conformance suite against the durable embedded SQLite broker (one file per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventwire.brokers.catalog import profile_named
from eventwire.core.contract import Broker
from eventwire.testing.conformance import ConformanceSuite, Harness
from eventwire.testing.conformance.harness import open_connected

pytestmark = pytest.mark.conformance


class SQLiteHarness(Harness):
    """Clients of one fresh broker file; a short lease keeps redelivery cases quick.

    Restarting an embedded broker means closing every client of the file and opening it
    again, which is what a process restart does.
    """

    supports_restart = True

    def __init__(self, path: Path) -> None:
        self.profile = profile_named("sqlite")
        self.url = f"sqlite:///{path}?lease=2"
        self._clients: list[Broker] = []

    async def open(self) -> Broker:
        broker = await open_connected(self.url)
        self._clients.append(broker)
        return broker

    async def restart_broker(self) -> None:
        clients, self._clients = self._clients, []
        for broker in clients:
            await broker.aclose()


class TestSQLiteConformance(ConformanceSuite):
    PROFILE = "sqlite"

    @pytest.fixture
    async def harness(self, tmp_path: Path) -> AsyncIterator[Harness]:
        harness = SQLiteHarness(tmp_path / "broker.db")
        yield harness
        await harness.aclose()
