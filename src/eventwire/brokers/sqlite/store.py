"""Broker layer: the sqlite broker's transactions, run one at a time in its worker thread.

Every write is one short ``BEGIN IMMEDIATE`` transaction, so several processes can share the
file: a claim takes the next visible messages of a group atomically, and two processes in one
group never receive the same claim at once.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from eventwire.brokers.sqlite import codec
from eventwire.brokers.sqlite.options import SQLiteSettings
from eventwire.brokers.sqlite.schema import open_database, write_transaction
from eventwire.core import headers as h
from eventwire.core.message import DEAD_LETTER_GROUP, Message, dead_letter_topic

T = TypeVar("T")

_INSERT = (
    f"INSERT OR IGNORE INTO messages (topic, {codec.COLUMNS}, stored_at, dedup) "  # noqa: S608 - constant SQL fragments; values are bound
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# A claim row is takeable once due: nobody holds it and its delay has passed, or its
# holder's lease ran out (the holder died or stalled).
_TAKEABLE = "topic = ? AND grp = ? AND due_at <= ?"
# INDEXED BY: without it the planner walks the primary key, i.e. the whole backlog of
# delayed redeliveries of the group, on every claim.
_DUE = (
    f"SELECT seq, attempt FROM claims INDEXED BY claims_due WHERE {_TAKEABLE} ORDER BY seq LIMIT ?"  # noqa: S608 - constant SQL fragments; values are bound
)
# The claim as this delivery got it: same holder and same claim token (attempt).
_HELD = "topic = ? AND grp = ? AND seq = ? AND consumer = ? AND attempt = ?"
_FORGET = f"DELETE FROM claims WHERE {_HELD}"  # noqa: S608 - constant SQL fragments; values are bound
_NACK = (
    "UPDATE claims SET consumer = NULL, due_at = ?, "  # noqa: S608 - constant SQL fragments; values are bound
    f"first_failure = COALESCE(first_failure, ?) WHERE {_HELD}"
)
_ANY_DUE = f"SELECT 1 FROM claims INDEXED BY claims_due WHERE {_TAKEABLE} LIMIT 1"  # noqa: S608 - constant SQL fragments; values are bound


@dataclass(frozen=True, slots=True, kw_only=True)
class Claimed:
    """One message claimed for a consumer."""

    seq: int
    attempt: int
    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class Settle:
    """Identifies one claim: only its current holder may settle it.

    ``attempt`` is the claim's token: it grows on every (re)claim, so a delivery whose lease
    ran out and was claimed again, even by the same consumer, can no longer settle the claim.
    """

    topic: str
    group: str
    seq: int
    consumer: str
    attempt: int


class SQLiteStore:
    """Owns the connection; not thread-safe: the broker calls it only from its worker thread."""

    def __init__(self, conn: sqlite3.Connection, settings: SQLiteSettings) -> None:
        self._conn = conn
        self._settings = settings

    @classmethod
    def open(cls, settings: SQLiteSettings) -> SQLiteStore:
        return cls(open_database(settings), settings)

    def close(self) -> None:
        self._conn.close()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._conn)

    def publish(
        self, batches: Sequence[tuple[str, Sequence[Message]]], *, dedup: bool = True
    ) -> None:
        """Store every (topic, messages) in ONE transaction; a repeated id is dropped (dedup)
        unless ``dedup`` is False (a replayed dead letter keeps the id it was stored with)."""
        now = time.time()
        flag = 1 if dedup else 0
        rows = [
            (topic, *codec.encode(m), now, flag) for topic, messages in batches for m in messages
        ]
        with self._write() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO topics (topic) VALUES (?)", {(t,) for t, _ in batches}
            )
            conn.executemany(_INSERT, rows)

    def redeliver(self, topic: str, group: str, message: Message) -> None:
        """Hand ``message`` (a replayed dead letter, its id kept) to ``group`` only: stored
        under the group's private replay topic, which no group reads by cursor, with a claim
        row of ``group`` due now. Retention deletes it once that claim is settled."""
        now = time.time()
        private = replay_topic(topic, group)
        with self._write() as conn:
            conn.execute("INSERT OR IGNORE INTO topics (topic) VALUES (?)", (private,))
            seq = conn.execute(
                _INSERT + " RETURNING seq", (private, *codec.encode(message), now, 0)
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO claims (topic, grp, seq, consumer, due_at, attempt) "
                "VALUES (?, ?, ?, NULL, ?, 0)",
                (topic, group, int(seq), now),
            )

    def join(self, topic: str, group: str, *, ephemeral_until: float | None) -> None:
        """Create the group if absent: at the oldest message, or at the end for broadcast."""
        dlq = dead_letter_topic(topic)
        with self._write() as conn:
            conn.executemany("INSERT OR IGNORE INTO topics (topic) VALUES (?)", [(topic,), (dlq,)])
            if ephemeral_until is None:
                start = 0
            else:
                row = conn.execute(
                    "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE topic = ?", (topic,)
                ).fetchone()
                start = int(row[0])
            conn.execute(
                "INSERT OR IGNORE INTO consumer_groups (topic, grp, cursor, ephemeral_until) "
                "VALUES (?, ?, ?, ?)",
                (topic, group, start, ephemeral_until),
            )
            # Dead letters must be kept from now on, even before anyone reads the DLQ.
            conn.execute(
                "INSERT OR IGNORE INTO consumer_groups (topic, grp, cursor) VALUES (?, ?, 0)",
                (dlq, DEAD_LETTER_GROUP),
            )

    def claim(self, topic: str, group: str, consumer: str, limit: int) -> list[Claimed]:
        """Claim up to ``limit`` visible messages: redeliveries first, then new ones."""
        now = time.time()
        if not self._anything_for(topic, group, now):
            return []  # idle polls never take the write lock
        lease_until = now + self._settings.lease
        claimed: list[tuple[int, int]] = []
        with self._write() as conn:
            retry = conn.execute(_DUE, (topic, group, now, limit)).fetchall()
            conn.executemany(
                "UPDATE claims SET consumer = ?, due_at = ?, attempt = attempt + 1 "
                "WHERE topic = ? AND grp = ? AND seq = ?",
                [(consumer, lease_until, topic, group, seq) for seq, _ in retry],
            )
            claimed.extend((seq, attempt + 1) for seq, attempt in retry)
            if len(claimed) < limit:
                claimed.extend(self._claim_new(topic, group, consumer, limit - len(claimed), now))
            if not claimed:
                return []
            return self._load(topic, group, consumer, claimed)

    def _anything_for(self, topic: str, group: str, now: float) -> bool:
        cursor = self._cursor(topic, group)
        fresh = self._conn.execute(
            "SELECT 1 FROM messages WHERE topic = ? AND seq > ? LIMIT 1", (topic, cursor)
        ).fetchone()
        if fresh is not None:
            return True
        again = self._conn.execute(_ANY_DUE, (topic, group, now)).fetchone()
        return again is not None

    def _cursor(self, topic: str, group: str) -> int:
        row = self._conn.execute(
            "SELECT cursor FROM consumer_groups WHERE topic = ? AND grp = ?", (topic, group)
        ).fetchone()
        # A vanished group (deleted by hand, or an expired broadcast group) is recreated at
        # the end rather than replaying history into it.
        return int(row[0]) if row else self._end(topic)

    def _end(self, topic: str) -> int:
        row = self._conn.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE topic = ?", (topic,)
        ).fetchone()
        return int(row[0])

    def _claim_new(
        self, topic: str, group: str, consumer: str, limit: int, now: float
    ) -> list[tuple[int, int]]:
        conn = self._conn
        cursor = self._cursor(topic, group)
        seqs = [
            int(r[0])
            for r in conn.execute(
                "SELECT seq FROM messages WHERE topic = ? AND seq > ? ORDER BY seq LIMIT ?",
                (topic, cursor, limit),
            )
        ]
        if not seqs:
            return []
        lease_until = now + self._settings.lease
        conn.executemany(
            "INSERT OR IGNORE INTO claims (topic, grp, seq, consumer, due_at, attempt) "
            "VALUES (?, ?, ?, ?, ?, 1)",
            [(topic, group, seq, consumer, lease_until) for seq in seqs],
        )
        conn.execute(
            "INSERT INTO consumer_groups (topic, grp, cursor) VALUES (?, ?, ?) "
            "ON CONFLICT (topic, grp) DO UPDATE SET cursor = excluded.cursor",
            (topic, group, seqs[-1]),
        )
        return [(seq, 1) for seq in seqs]

    def _load(
        self, topic: str, group: str, consumer: str, claimed: list[tuple[int, int]]
    ) -> list[Claimed]:
        conn = self._conn
        attempts = dict(claimed)
        marks = ",".join("?" * len(attempts))
        query = f"SELECT m.seq, {codec.SELECT_COLUMNS} FROM messages AS m WHERE m.seq IN ({marks})"  # noqa: S608 - constant SQL fragments; values are bound
        rows = {int(r[0]): r[1:] for r in conn.execute(query, list(attempts))}
        out: list[Claimed] = []
        for seq in sorted(attempts):
            row = rows.get(seq)
            settle = Settle(
                topic=topic, group=group, seq=seq, consumer=consumer, attempt=attempts[seq]
            )
            if row is None:  # message deleted under the claim: nothing left to deliver
                self._drop(settle)
                continue
            try:
                message = codec.decode(row)
            except codec.EnvelopeError as exc:
                # A row we cannot trust goes to the DLQ, body intact, instead of crashing
                # every consumer of the group on each poll.
                dead = codec.salvage(
                    row, topic=topic, group=group, attempt=attempts[seq], error=str(exc)
                )
                self._move_to_dlq(settle, dead)
                continue
            out.append(Claimed(seq=seq, attempt=attempts[seq], message=message))
        return out

    def _drop(self, s: Settle) -> None:
        self._conn.execute(_FORGET, _held(s))

    def _move_to_dlq(self, s: Settle, dead: Message) -> None:
        gone = self._conn.execute(
            _FORGET + " RETURNING first_failure",
            _held(s),
        ).fetchall()
        if not gone:
            return  # our lease was lost: the new holder settles it
        first_failure = gone[0][0]
        if first_failure is not None and h.DLQ_FIRST_FAILURE not in dead.headers:
            stamp = datetime.fromtimestamp(first_failure, tz=UTC)
            dead = dead.with_headers(
                **{h.DLQ_FIRST_FAILURE: stamp.isoformat(timespec="milliseconds")}
            )
        dlq = dead_letter_topic(s.topic)
        self._conn.execute("INSERT OR IGNORE INTO topics (topic) VALUES (?)", (dlq,))
        self._conn.execute(_INSERT, (dlq, *codec.encode(dead), time.time(), 0))

    def ack(self, settles: Iterable[Settle]) -> None:
        """Forget settled claims (a batch, in one transaction)."""
        rows = [_held(s) for s in settles]
        with self._write() as conn:
            conn.executemany(_FORGET, rows)

    def nack(self, s: Settle, delay: float) -> None:
        """Hand the claim back to the group, visible again after ``delay`` seconds."""
        now = time.time()
        with self._write() as conn:
            conn.execute(
                _NACK,
                (now + delay, now, *_held(s)),
            )

    def dead_letter(self, s: Settle, dead: Message) -> None:
        """Move the claimed message to the topic's DLQ and forget the claim, atomically."""
        with self._write():
            self._move_to_dlq(s, dead)

    def heartbeat(self, topic: str, group: str, consumer: str, ephemeral: bool) -> None:
        """Extend the leases of a live consumer (and the life of its broadcast group)."""
        now = time.time()
        with self._write() as conn:
            conn.execute(
                "UPDATE claims SET due_at = ? WHERE topic = ? AND grp = ? AND consumer = ?",
                (now + self._settings.lease, topic, group, consumer),
            )
            if ephemeral:
                conn.execute(
                    "UPDATE consumer_groups SET ephemeral_until = ? WHERE topic = ? AND grp = ?",
                    (now + 3 * self._settings.lease, topic, group),
                )

    def release(self, topic: str, group: str, consumer: str, *, leave: bool) -> None:
        """Return a consumer's claims to its group at once; ``leave`` deletes the group."""
        with self._write() as conn:
            if leave:
                conn.execute("DELETE FROM claims WHERE topic = ? AND grp = ?", (topic, group))
                conn.execute(
                    "DELETE FROM consumer_groups WHERE topic = ? AND grp = ?", (topic, group)
                )
                return
            conn.execute(
                "UPDATE claims SET consumer = NULL, due_at = ? "
                "WHERE topic = ? AND grp = ? AND consumer = ?",
                (time.time(), topic, group, consumer),
            )

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the connection (retention, health), in the worker thread."""
        return fn(self._conn)


REPLAY_MARK = "\x1freplay\x1f"  # a unit separator: never part of a topic or group name


def replay_topic(topic: str, group: str) -> str:
    """The private topic holding replays for ``group`` of ``topic`` (see ``redeliver``)."""
    return f"{topic}{REPLAY_MARK}{group}"


def _held(s: Settle) -> tuple[str, str, int, str, int]:
    return (s.topic, s.group, s.seq, s.consumer, s.attempt)
