"""Example: the service's side effects (charges, notifications) in a SQLite file.

Charges carry the order id as the payment provider's idempotency key (as real payment APIs
offer): a charge request repeated for an order is absorbed and counted, never charged twice.
Notifications are appended as they are sent, so a repeated one shows up as a duplicate row.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    order_id TEXT PRIMARY KEY,
    amount_cents INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS notifications (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL,
    message_id TEXT NOT NULL
);
"""


class Ledger:
    """Record of side effects, shared by every worker process through one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        with self._lock:
            conn = self._connection()
            with conn:
                conn.execute(sql, params)

    async def charge(self, order_id: str, amount_cents: int, message_id: str) -> None:
        """Charge once per order id; a repeated request only increments ``requests``."""
        await asyncio.to_thread(
            self._write,
            "INSERT INTO charges (order_id, amount_cents, message_id) VALUES (?, ?, ?) "
            "ON CONFLICT (order_id) DO UPDATE SET requests = requests + 1",
            (order_id, amount_cents, message_id),
        )

    async def notify(self, order_id: str, message_id: str) -> None:
        await asyncio.to_thread(
            self._write,
            "INSERT INTO notifications (order_id, message_id) VALUES (?, ?)",
            (order_id, message_id),
        )

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
