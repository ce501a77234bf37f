"""Example: the service's side effects (charges, notifications) in the store's SQLite file.

``charge`` and ``notify`` are *effects*: synchronous functions of a ``sqlite3.Connection``
that the handlers pass to ``ctx.effectively_once``. They run inside the idempotency store's
transaction, so each one commits together with its message's done-mark: a worker killed at
any moment leaves either both or neither, and a charge is never made twice. ``Ledger`` reads
the tables back for the demo's summary (a repeated effect would show as ``requests > 1`` or as
a second notification row).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

_TABLES = (
    """CREATE TABLE IF NOT EXISTS charges (
        order_id TEXT PRIMARY KEY,
        amount_cents INTEGER NOT NULL,
        message_id TEXT NOT NULL,
        requests INTEGER NOT NULL DEFAULT 1
    )""",
    """CREATE TABLE IF NOT EXISTS notifications (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        order_id TEXT NOT NULL,
        message_id TEXT NOT NULL
    )""",
)


def _create_tables(conn: sqlite3.Connection) -> None:
    # A no-op once the tables exist; keeps each effect self-contained (no setup step).
    for statement in _TABLES:
        conn.execute(statement)


def charge(conn: sqlite3.Connection, *, order_id: str, amount_cents: int, message_id: str) -> None:
    """Effect: charge the order (``requests`` would count a repeat, which cannot happen)."""
    _create_tables(conn)
    conn.execute(
        "INSERT INTO charges (order_id, amount_cents, message_id) VALUES (?, ?, ?) "
        "ON CONFLICT (order_id) DO UPDATE SET requests = requests + 1",
        (order_id, amount_cents, message_id),
    )


def notify(conn: sqlite3.Connection, *, order_id: str, message_id: str) -> None:
    """Effect: record the notification sent (appended: a repeat would be a second row)."""
    _create_tables(conn)
    conn.execute(
        "INSERT INTO notifications (order_id, message_id) VALUES (?, ?)", (order_id, message_id)
    )


class Ledger:
    """Read-back of the side effects, shared by every worker process through one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            with conn:
                _create_tables(conn)
            self._conn = conn
        return self._conn

    def counts(self) -> dict[str, int]:
        """Charged orders, repeated charge requests, notifications sent and distinct."""
        with self._lock:
            conn = self._connection()
            charged, repeated = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(requests - 1), 0) FROM charges"
            ).fetchone()
            sent, distinct = conn.execute(
                "SELECT COUNT(*), COUNT(DISTINCT order_id) FROM notifications"
            ).fetchone()
            return {
                "charged": int(charged),
                "charge_requests_repeated": int(repeated),
                "notifications": int(sent),
                "notified": int(distinct),
            }

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
