"""Broker layer: sqlite retention, so the broker file does not grow without bound.

A message may be deleted only once every group of its topic has passed it (its cursor is
beyond it and it has no open claim), and then only when it is older than ``retention``
seconds or is not among the newest ``max_messages`` of its topic. Unsettled messages are never
deleted. Broadcast groups whose process died (no heartbeat for three leases) are removed first,
so they do not pin messages. Each sweep is a few indexed queries per topic in short
transactions, deleting at most ``BATCH`` rows per topic, so it never holds the write lock long.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Final

from eventwire.brokers.sqlite.schema import WAL_SIZE_LIMIT, write_transaction

BATCH: Final = 5000
_CHECKPOINT_WAIT_MS: Final = 100


def sweep(
    conn: sqlite3.Connection,
    *,
    retention: float,
    max_messages: int | None,
    lease: float | None = None,
    now: float | None = None,
) -> int:
    """Delete what retention allows; returns how many messages were deleted."""
    now = time.time() if now is None else now
    if lease is not None:
        _clamp_leases(conn, now + lease)
    _expire_broadcast_groups(conn, now)
    topics = [str(r[0]) for r in conn.execute("SELECT topic FROM topics")]
    return sum(
        _sweep_replays(conn, t)
        if _REPLAY in t
        else _sweep_topic(conn, t, now - retention, max_messages)
        for t in topics
    )


_REPLAY = "\x1freplay\x1f"  # store.REPLAY_MARK (store imports this module's neighbours)


def _sweep_replays(conn: sqlite3.Connection, private: str) -> int:
    # A group's replays (store.redeliver) go once their claim is settled; never before.
    topic, _, group = private.partition(_REPLAY)
    if (
        conn.execute("SELECT 1 FROM messages WHERE topic = ? LIMIT 1", (private,)).fetchone()
        is None
    ):
        return 0
    with write_transaction(conn):
        deleted = conn.execute(
            "DELETE FROM messages WHERE topic = ?1 AND NOT EXISTS (SELECT 1 FROM claims AS c "
            "WHERE c.topic = ?2 AND c.grp = ?3 AND c.seq = messages.seq)",
            (private, topic, group),
        ).rowcount
    return max(deleted, 0)


def _clamp_leases(conn: sqlite3.Connection, longest: float) -> None:
    # Leases are wall-clock times shared by processes. After the clock is set back, a lease
    # of a dead consumer would otherwise last as long as the jump (hours: its messages stuck);
    # no live lease ever ends later than now + lease, as heartbeats set exactly that.
    if conn.execute(
        "SELECT 1 FROM claims WHERE consumer IS NOT NULL AND due_at > ? LIMIT 1", (longest,)
    ).fetchone():
        with write_transaction(conn):
            conn.execute(
                "UPDATE claims SET due_at = ?1 WHERE consumer IS NOT NULL AND due_at > ?1",
                (longest,),
            )


def _expire_broadcast_groups(conn: sqlite3.Connection, now: float) -> None:
    stale = conn.execute(
        "SELECT topic, grp FROM consumer_groups WHERE ephemeral_until < ?", (now,)
    ).fetchall()
    if not stale:
        return
    with write_transaction(conn):
        conn.executemany("DELETE FROM claims WHERE topic = ? AND grp = ?", stale)
        conn.executemany(
            "DELETE FROM consumer_groups WHERE topic = ? AND grp = ? AND ephemeral_until < ?",
            [(t, g, now) for t, g in stale],
        )


def _sweep_topic(
    conn: sqlite3.Connection, topic: str, older_than: float, max_messages: int | None
) -> int:
    oldest = conn.execute(
        "SELECT seq, stored_at FROM messages WHERE topic = ? ORDER BY seq LIMIT 1", (topic,)
    ).fetchone()
    if oldest is None:
        return 0
    cap = 0
    if max_messages is not None:
        row = conn.execute(
            "SELECT seq FROM messages WHERE topic = ? ORDER BY seq DESC LIMIT 1 OFFSET ?",
            (topic, max_messages),
        ).fetchone()
        cap = int(row[0]) if row else 0
    if oldest[1] >= older_than and oldest[0] > cap:
        return 0  # the oldest message is young and within the count limit: nothing to do
    with write_transaction(conn):
        # Read the bound inside the write transaction: no claim can move it meanwhile.
        passed = conn.execute(
            "SELECT MIN(bound) FROM ("
            " SELECT MIN(cursor) AS bound FROM consumer_groups WHERE topic = ?1"
            " UNION ALL SELECT MIN(seq) - 1 FROM claims WHERE topic = ?1)",
            (topic,),
        ).fetchone()[0]
        if passed is None:  # no group ever read this topic: age and count alone decide
            passed = oldest[0] + BATCH
        deleted = conn.execute(
            "DELETE FROM messages WHERE seq IN (SELECT seq FROM messages WHERE topic = ? "
            "AND seq <= ? ORDER BY seq LIMIT ?) AND (stored_at < ? OR seq <= ?)",
            (topic, passed, BATCH, older_than, cap),
        ).rowcount
    return max(deleted, 0)


def checkpoint(conn: sqlite3.Connection, *, wal: Path, busy_timeout_ms: int) -> bool:
    """Cut the WAL file back once it outgrew ``WAL_SIZE_LIMIT``; True if it was cut.

    SQLite's automatic checkpoints copy pages back but restart the WAL only when no reader
    still uses it; with consumers of several processes polling all the time that moment may
    be rare and the file keeps its largest size. A TRUNCATE checkpoint waits for those
    readers (they are short: one query each), but holds the write lock meanwhile, so it waits
    briefly and simply tries again at the next sweep.
    """
    try:
        size = wal.stat().st_size
    except FileNotFoundError:
        return False
    if size <= WAL_SIZE_LIMIT:
        return False
    conn.execute(f"PRAGMA busy_timeout = {_CHECKPOINT_WAIT_MS}")
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    return not busy
