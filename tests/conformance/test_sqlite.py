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
    """Clients of one fresh broker file; a short lease keeps redelivery cases quick."""

    def __init__(self, path: Path) -> None:
        self.profile = profile_named("sqlite")
        self.url = f"sqlite:///{path}?lease=2"

    async def open(self) -> Broker:
        return await open_connected(self.url)


class TestSQLiteConformance(ConformanceSuite):
    PROFILE = "sqlite"

    @pytest.fixture
    async def harness(self, tmp_path: Path) -> AsyncIterator[Harness]:
        harness = SQLiteHarness(tmp_path / "broker.db")
        yield harness
        await harness.aclose()
