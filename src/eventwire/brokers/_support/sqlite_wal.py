"""Broker layer: switching a SQLite file to WAL safely when several processes open it at once."""

from __future__ import annotations

import sqlite3
import time

from eventwire.core.errors import ConfigurationError


def enable_wal(conn: sqlite3.Connection, timeout: float, where: str) -> None:
    """Put ``conn``'s file in WAL mode, waiting up to ``timeout`` s for other openers.

    Two processes opening a file at once both try to switch it to WAL; SQLite answers the
    loser "locked" at once, without waiting on busy_timeout (waiting could deadlock), so a
    second worker of a freshly scaffolded service failed to start. Retry instead.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(0.01)
    if mode.lower() != "wal":
        raise ConfigurationError(
            f"sqlite file {where!r} cannot use WAL mode (journal_mode is {mode}): "
            "put it on a local file system"
        )
