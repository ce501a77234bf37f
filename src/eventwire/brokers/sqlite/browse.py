"""Broker layer: reading a topic's dead letters from the sqlite file without changing it.

``eventwire dlq list`` and ``eventwire health`` are reads: the file is opened read-only
(``mode=ro``), so a missing file or folder is reported, never created, and no group, topic or
claim row is written. A dead letter is still in the DLQ while the ``eventwire-dlq`` group has
not acknowledged it: its row lies beyond that group's cursor, or it has an open claim.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from eventwire.brokers.sqlite import codec
from eventwire.core.message import DEAD_LETTER_GROUP, Message, dead_letter_topic


def read_only(path: Path, busy_timeout_ms: int) -> sqlite3.Connection | None:
    """A read-only connection to ``path``, or None if there is no such file."""
    if not path.is_file():
        return None
    uri = f"{path.resolve().as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout_ms / 1000)
    conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    return conn


def dead_letters(conn: sqlite3.Connection, topic: str, limit: int) -> list[Message] | None:
    """Up to ``limit`` dead letters of ``topic`` still in its DLQ, oldest first; None if the
    file has never heard of that topic (no DLQ exists)."""
    dlq = dead_letter_topic(topic)
    try:
        known = conn.execute("SELECT 1 FROM topics WHERE topic = ?", (dlq,)).fetchone()
    except sqlite3.OperationalError:  # not an eventwire file (no such table)
        return None
    if known is None:
        return None
    row = conn.execute(
        "SELECT cursor FROM consumer_groups WHERE topic = ? AND grp = ?", (dlq, DEAD_LETTER_GROUP)
    ).fetchone()
    cursor = int(row[0]) if row else 0
    query = (
        f"SELECT m.seq, {codec.SELECT_COLUMNS} FROM messages AS m WHERE m.topic = ?1 AND ("  # noqa: S608 - constant SQL fragments; values are bound
        "m.seq > ?2 OR m.seq IN (SELECT seq FROM claims WHERE topic = ?1 AND grp = ?3)"
        ") ORDER BY m.seq LIMIT ?4"
    )
    out: list[Message] = []
    for seq, *columns in conn.execute(query, (dlq, cursor, DEAD_LETTER_GROUP, limit)):
        try:
            out.append(codec.decode(tuple(columns)))
        except codec.EnvelopeError as exc:
            out.append(
                codec.salvage(
                    tuple(columns), topic=dlq, group=DEAD_LETTER_GROUP, attempt=0, error=str(exc)
                )
            )
        del seq
    return out
