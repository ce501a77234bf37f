"""Broker layer: the sqlite broker's versioned schema and how its file is opened (worker thread).

Tables:

* ``messages``: every retained message; ``seq`` is one monotonic counter for all topics
  (AUTOINCREMENT, so a seq is never reused after retention deleted the newest rows).
* ``consumer_groups``: one row per (topic, group): ``cursor`` is the highest seq the group
  has claimed for the first time; broadcast groups carry ``ephemeral_until`` (heartbeat).
* ``claims``: messages of a group handed out but not settled. ``due_at`` is when the row may
  be claimed again: the lease end while ``consumer`` holds it (heartbeats push it forward),
  or, with ``consumer`` NULL, when a nack's delay is over (native delayed redelivery).
* ``topics``: topic names, so retention visits each topic without scanning messages.

Upgrades: ``meta.schema_version`` names the layout; opening a file of an older version
migrates it in one ``BEGIN IMMEDIATE`` transaction (the first process to open it does it,
the others wait on the lock), and a newer version is refused rather than misread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from eventwire.brokers._support.sqlite_wal import enable_wal
from eventwire.brokers.sqlite.options import SQLiteSettings
from eventwire.core.errors import BrokerError, ConfigurationError

SCHEMA_VERSION: Final = 1
WAL_SIZE_LIMIT: Final = 64 * 1024 * 1024  # bytes

_DDL: Final = (
    """CREATE TABLE IF NOT EXISTS messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        topic TEXT NOT NULL,
        msg_id TEXT NOT NULL,
        msg_key TEXT,
        content_type TEXT NOT NULL,
        correlation_id TEXT,
        causation_id TEXT,
        created REAL NOT NULL,
        headers TEXT NOT NULL,
        body BLOB NOT NULL,
        stored_at REAL NOT NULL,
        dedup INTEGER NOT NULL DEFAULT 1
    )""",
    "CREATE INDEX IF NOT EXISTS messages_by_topic ON messages (topic, seq)",
    # Dead letters are stored with dedup = 0: two groups may dead-letter the same message.
    """CREATE UNIQUE INDEX IF NOT EXISTS messages_dedup ON messages (topic, msg_id)
        WHERE dedup = 1""",
    """CREATE TABLE IF NOT EXISTS consumer_groups (
        topic TEXT NOT NULL,
        grp TEXT NOT NULL,
        cursor INTEGER NOT NULL,
        ephemeral_until REAL,
        PRIMARY KEY (topic, grp)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS claims (
        topic TEXT NOT NULL,
        grp TEXT NOT NULL,
        seq INTEGER NOT NULL,
        consumer TEXT,
        due_at REAL NOT NULL,
        attempt INTEGER NOT NULL,
        first_failure REAL,
        PRIMARY KEY (topic, grp, seq)
    ) WITHOUT ROWID""",
    # Finds what is due without scanning a large backlog of delayed redeliveries.
    "CREATE INDEX IF NOT EXISTS claims_due ON claims (topic, grp, due_at)",
    "CREATE TABLE IF NOT EXISTS topics (topic TEXT PRIMARY KEY) WITHOUT ROWID",
)


def open_database(settings: SQLiteSettings) -> sqlite3.Connection:
    """Open (creating if absent) the broker file in WAL mode; call it in the worker thread."""
    path = settings.path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create directory {str(path.parent)!r} for the sqlite broker file: "
            f"{exc.strerror or exc}; pick a writable location"
        ) from exc
    conn: sqlite3.Connection | None = None
    try:
        # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves, keeping every
        # write transaction short and explicit.
        conn = sqlite3.connect(path, isolation_level=None, timeout=settings.busy_timeout_ms / 1000)
        conn.execute(f"PRAGMA busy_timeout = {settings.busy_timeout_ms}")
        enable_wal(conn, settings.busy_timeout_ms / 1000, str(path))
        conn.execute(f"PRAGMA synchronous = {settings.synchronous}")
        # After a burst the WAL file is cut back to this size at its next reset instead of
        # keeping its largest size on disk for good (see retention.checkpoint).
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        _migrate(conn, str(path))
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise BrokerError(f"sqlite broker file {str(path)!r} stayed locked: {exc}") from exc
        raise ConfigurationError(
            f"cannot open sqlite broker file {str(path)!r}: {exc}; check the path and permissions"
        ) from exc
    except BaseException:
        if conn is not None:
            conn.close()
        raise
    return conn


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One ``BEGIN IMMEDIATE`` ... ``COMMIT``; the connection is usable again whatever fails."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        # SQLite may already have rolled back by itself (SQLITE_FULL, IOERR, a failed COMMIT):
        # a blind ROLLBACK would then raise and hide the real error; leaving the transaction
        # open would make every later BEGIN fail ("within a transaction") forever.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _migrate(conn: sqlite3.Connection, where: str) -> None:
    # BEGIN IMMEDIATE: two processes opening a new file at once must not both create it.
    with write_transaction(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
        row = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"sqlite broker file {where!r} has schema version {version}, newer than this "
                f"eventwire understands ({SCHEMA_VERSION}): upgrade eventwire"
            )
        if version < SCHEMA_VERSION:
            for statement in _DDL:
                conn.execute(statement)
            conn.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
