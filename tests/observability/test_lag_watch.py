"""Observability tests: ``LagWatch`` with a scripted reader: each group subscriber is read,
broadcast ones are not, a failed or hung read is counted and drops the stale figure, and it
is logged once per outage (from the second failure in a row); ``open_lag_reader`` finds no
reader for brokers without backlog."""

from __future__ import annotations

import asyncio
import logging

import pytest

from eventwire.brokers.catalog import open_broker
from eventwire.core.errors import BrokerError, ConfigurationError
from eventwire.core.lag import Backlog
from eventwire.observability.counters import AppCounters
from eventwire.observability.lag import LagPolicy, LagWatch, open_lag_reader


class ScriptedReader:
    def __init__(self, answers: list[Backlog | Exception | None]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str]] = []
        self.closed = False

    async def read(self, topic: str, group: str) -> Backlog | None:
        self.asked.append((topic, group))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if answer is None:
            await asyncio.sleep(3600)  # hangs: the watch's timeout must cut it
        return answer

    async def aclose(self) -> None:
        self.closed = True


async def test_reads_groups_counts_failures_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    counters = AppCounters()
    grouped = counters.subscriber("t", "g", "h")
    broadcast = counters.subscriber("t", None, "h2")
    reader = ScriptedReader(
        [Backlog(waiting=3, unacked=1), BrokerError("down"), None, Backlog(waiting=7)]
    )
    watch = LagWatch(reader, lambda: [grouped, broadcast], LagPolicy(every=3600, timeout=0.05))
    await watch.read_once()
    assert grouped.backlog == Backlog(waiting=3, unacked=1)
    assert grouped.backlog.total == 4
    assert broadcast.backlog is None
    with caplog.at_level(logging.INFO, logger="eventwire.observability"):
        await watch.read_once()  # fails
        assert (grouped.backlog, grouped.lag_read_failures) == (None, 1)  # type: ignore[comparison-overlap]  # read_once() resets what mypy narrowed above
        await watch.read_once()  # hangs past the timeout
        assert (grouped.backlog, grouped.lag_read_failures) == (None, 2)  # type: ignore[comparison-overlap]  # read_once() resets what mypy narrowed above
        await watch.read_once()
    assert grouped.backlog == Backlog(waiting=7)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot read the lag" in m for m in messages) == 1, messages
    assert sum("reading the lag of group g on t again" in m for m in messages) == 1
    assert reader.asked == [("t", "g")] * 4
    await watch.aclose()
    assert reader.closed
    assert grouped.backlog is None


async def test_the_task_reads_periodically_until_closed() -> None:
    counters = AppCounters()
    sub = counters.subscriber("t", "g", "h")
    reader = ScriptedReader([Backlog(waiting=n) for n in range(100)])
    async with LagWatch(reader, lambda: [sub], LagPolicy(every=0.01)) as watch:
        async with asyncio.timeout(10):
            while watch.rounds < 3:
                await asyncio.sleep(0.005)
    assert reader.closed
    rounds = len(reader.asked)
    await asyncio.sleep(0.05)
    assert len(reader.asked) == rounds  # stopped


@pytest.mark.parametrize(
    ("url", "has_reader"),
    [
        ("memory://lag-watch", True),
        ("redis+pubsub://127.0.0.1:6379/0", False),
        ("nats+core://127.0.0.1:4222", False),
    ],
)
def test_brokers_without_backlog_have_no_reader(url: str, has_reader: bool) -> None:
    broker = open_broker(url)
    assert (open_lag_reader(broker) is not None) is has_reader


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ConfigurationError, match="every > 0"):
        LagPolicy(every=0)


async def test_one_failed_read_is_counted_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    counters = AppCounters()
    sub = counters.subscriber("t", "g", "h")
    reader = ScriptedReader([BrokerError("blip"), Backlog(waiting=1)])
    watch = LagWatch(reader, lambda: [sub], LagPolicy(every=3600))
    with caplog.at_level(logging.INFO, logger="eventwire.observability"):
        await watch.read_once()
        await watch.read_once()
    assert (sub.lag_read_failures, sub.backlog) == (1, Backlog(waiting=1))
    assert not caplog.records
    await watch.aclose()
