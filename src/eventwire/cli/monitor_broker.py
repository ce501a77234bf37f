"""CLI layer: ``eventwire monitor --broker``, the backlog of groups read from the broker itself.

For when no worker is running (or none serves ``/metrics``): the broker's lag reader (the
one the App's ``/metrics`` uses, ``brokers/<name>/lag.py``) reads each ``--group``'s backlog
on ``--topic`` and the dead letters waiting in the topic's DLQ, creating nothing. Brokers
that keep no backlog (core NATS, Redis Pub/Sub) have no reader: that is one line, exit 2.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from eventwire.cli.errors import CLIError
from eventwire.core.message import DEAD_LETTER_GROUP, dead_letter_topic

if TYPE_CHECKING:
    from rich.table import Table

    from eventwire.core.lag import Backlog, LagReader
    from eventwire.core.url import BrokerURL


@dataclass(frozen=True, slots=True)
class GroupBacklog:
    """One row: a group's backlog on the topic (None: no such group on the broker yet)."""

    group: str
    backlog: Backlog | None
    read_at: float


@dataclass(frozen=True, slots=True)
class BrokerSnapshot:
    topic: str
    groups: list[GroupBacklog]
    dead_letters: Backlog | None  # the DLQ's backlog for its reader group


def open_reader(url: BrokerURL) -> LagReader:
    """The lag reader of ``url``'s broker, or a one-line error for brokers that keep none."""
    from eventwire.brokers.catalog import open_broker
    from eventwire.observability.lag import open_lag_reader

    broker = open_broker(url)
    reader = open_lag_reader(broker)
    if reader is None:
        raise CLIError(
            f"{broker.profile.name} keeps no backlog to read: monitor a worker instead "
            "(--worker http://HOST:PORT of eventwire run --http-port)"
        )
    return reader


async def read_snapshot(reader: LagReader, topic: str, groups: list[str]) -> BrokerSnapshot:
    rows = [GroupBacklog(g, await reader.read(topic, g), time.monotonic()) for g in groups]
    dead = await reader.read(dead_letter_topic(topic), DEAD_LETTER_GROUP)
    return BrokerSnapshot(topic=topic, groups=rows, dead_letters=dead)


def drain_rates(previous: BrokerSnapshot | None, current: BrokerSnapshot) -> dict[str, float]:
    """Messages per second each group's backlog shrank by (negative: it grows)."""
    if previous is None:
        return {}
    before = {row.group: row for row in previous.groups}
    rates = {}
    for row in current.groups:
        old = before.get(row.group)
        if old is None or old.backlog is None or row.backlog is None:
            continue
        elapsed = row.read_at - old.read_at
        if elapsed > 0:
            rates[row.group] = (old.backlog.total - row.backlog.total) / elapsed
    return rates


def as_dict(snapshot: BrokerSnapshot) -> dict[str, object]:
    def backlog(b: Backlog | None) -> dict[str, object] | None:
        if b is None:
            return None
        return {
            "total": b.total,
            "waiting": b.waiting,
            "unacked": b.unacked,
            **({"partitions": dict(b.partitions)} if b.partitions else {}),
        }

    return {
        "topic": snapshot.topic,
        "groups": [{"group": r.group, "backlog": backlog(r.backlog)} for r in snapshot.groups],
        "dead_letters": backlog(snapshot.dead_letters),
    }


def render(previous: BrokerSnapshot | None, current: BrokerSnapshot, where: str) -> Table:
    from rich.table import Table

    rates = drain_rates(previous, current)
    table = Table(title=f"eventwire monitor: {where} {current.topic}", title_justify="left")
    table.add_column("group")
    for column in ("backlog", "waiting", "unacked", "drain msg/s"):
        table.add_column(column, justify="right")
    for row in current.groups:
        b = row.backlog
        rate = rates.get(row.group)
        table.add_row(
            row.group,
            "no such group yet" if b is None else f"{b.total:,}",
            "" if b is None else f"{b.waiting:,}",
            "" if b is None or b.unacked is None else f"{b.unacked:,}",
            "-" if rate is None else f"{rate:,.1f}",
        )
    dead = current.dead_letters
    table.caption = (
        "dead letters: no dead-letter group to read yet (eventwire dlq list shows them)"
        if dead is None
        else f"dead letters waiting: {dead.total:,}"
    )
    return table
