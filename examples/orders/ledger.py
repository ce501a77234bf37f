"""Example: the service's side effects (charges, notifications) in a SQLite file.

Every row is appended, never upserted, so a handler that ran twice for one order shows up as
a double charge: the demo and the process tests count them to prove idempotency works.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    message_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notifications (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL,
    message_id TEXT NOT NULL
);
"""


class Ledger:
    """Append-only record of side effects, shared by every worker process through one file."""

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

    async def record_charge(self, order_id: str, amount_cents: int, message_id: str) -> None:
        await asyncio.to_thread(
            self._write,
            "INSERT INTO charges (order_id, amount_cents, message_id) VALUES (?, ?, ?)",
            (order_id, amount_cents, message_id),
        )

    async def record_notification(self, order_id: str, message_id: str) -> None:
        await asyncio.to_thread(
            self._write,
            "INSERT INTO notifications (order_id, message_id) VALUES (?, ?)",
            (order_id, message_id),
        )

    def counts(self) -> dict[str, int]:
        """Rows and distinct orders per table (read-only; safe while workers write)."""
        with self._lock:
            conn = self._connection()
            out: dict[str, int] = {}
            for table in ("charges", "notifications"):
                total, distinct = conn.execute(
                    f"SELECT COUNT(*), COUNT(DISTINCT order_id) FROM {table}"
                ).fetchone()
                out[table] = int(total)
                out[f"{table}_distinct"] = int(distinct)
            return out

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
