"""Broker layer: a sqlite group's backlog, read over a read-only connection of its own.

Each read opens the file with ``mode=ro`` in a worker thread (cheap for SQLite, and it never
queues behind the broker's own writer thread), so reading creates no file, group or row.
"""

from __future__ import annotations

import asyncio
import sqlite3

from eventwire.brokers.sqlite import browse
from eventwire.brokers.sqlite.broker import SQLiteBroker
from eventwire.brokers.sqlite.options import SQLiteSettings
from eventwire.core.contract import Broker
from eventwire.core.errors import BrokerError
from eventwire.core.lag import Backlog, LagReader

# Unclaimed rows past the cursor wait; claims without a consumer are nacked ones waiting for
# their delay; claims with one are held (leased) by a consumer.
_BACKLOG = """
SELECT g.cursor,
       (SELECT COUNT(*) FROM messages WHERE topic = ?1 AND seq > g.cursor),
       (SELECT COUNT(*) FROM claims WHERE topic = ?1 AND grp = ?2 AND consumer IS NULL),
       (SELECT COUNT(*) FROM claims WHERE topic = ?1 AND grp = ?2 AND consumer IS NOT NULL)
FROM consumer_groups AS g WHERE g.topic = ?1 AND g.grp = ?2
"""


class SQLiteLagReader:
    """Reads backlogs from the broker's file, never writing to it."""

    def __init__(self, settings: SQLiteSettings) -> None:
        self._settings = settings

    async def read(self, topic: str, group: str) -> Backlog | None:
        try:
            return await asyncio.to_thread(self._read, topic, group)
        except sqlite3.Error as exc:
            raise BrokerError(
                f"cannot read the backlog of {group!r} on {topic!r} from sqlite file "
                f"{str(self._settings.path)!r}: {exc}"
            ) from exc

    def _read(self, topic: str, group: str) -> Backlog | None:
        conn = browse.read_only(self._settings.path, self._settings.busy_timeout_ms)
        if conn is None:
            return None
        try:
            row = conn.execute(_BACKLOG, (topic, group)).fetchone()
        finally:
            conn.close()
        if row is None:
            return None
        _cursor, unread, returned, held = (int(value) for value in row)
        return Backlog(waiting=unread + returned, unacked=held)

    async def aclose(self) -> None:
        return None


def open_reader(broker: Broker) -> LagReader | None:
    """The reader of a ``SQLiteBroker``'s file."""
    assert isinstance(broker, SQLiteBroker)
    return SQLiteLagReader(broker.settings)
