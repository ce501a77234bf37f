"""Broker layer: removing what one ``eventwire bench`` run wrote into a sqlite broker file.

SQLite has no client library of its own to compare with (the adapter *is* the client), so
this module has no raw driver; it only deletes the run's topic, its dead-letter topic, their
groups and claims, so a bench against a service's broker file leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing

from eventwire.brokers.sqlite.options import SQLiteSettings
from eventwire.core.contract import Broker
from eventwire.core.message import dead_letter_topic
from eventwire.core.url import BrokerURL

CLIENT = None


async def remove_run(url: BrokerURL, topic: str, group: str, brokers: list[Broker]) -> None:
    """Delete every row of ``topic`` and its DLQ (messages, groups, claims, topic names)."""
    settings = SQLiteSettings.from_url(url)
    await asyncio.to_thread(_delete, settings, [topic, dead_letter_topic(topic)])


def _delete(settings: SQLiteSettings, topics: list[str]) -> None:
    if not settings.path.is_file():
        return
    timeout = settings.busy_timeout_ms / 1000
    with closing(sqlite3.connect(settings.path, timeout=timeout)) as db, db:
        for table in ("claims", "consumer_groups", "messages", "topics"):
            db.executemany(
                f"DELETE FROM {table} WHERE topic = ?",  # noqa: S608 - fixed table names
                [(t,) for t in topics],
            )
