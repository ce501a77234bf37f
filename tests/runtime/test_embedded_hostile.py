"""Hostile producers on the embedded brokers (issue 11): SQLite rows written with sqlite3 in
the broker's own layout, one field broken at a time, and memory messages no eventwire
publisher would make (forged attempt, dead-letter and replay headers, non-finite stamps),
between good messages, consumed by a typed handler (concurrency 4, max_attempts 3).

Asserts and prints the figures: every good message processed once, every hostile one
dead-lettered with its bytes and a reason (or processed when its body is valid), nothing
unsettled, no consumer task death, no handler called more than max_attempts times.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from eventwire.brokers._support.envelope import REASON_PREFIX
from eventwire.brokers.memory.broker import forget_hub
from eventwire.brokers.memory.state import hub_for
from eventwire.core import headers as h
from eventwire.core.message import Message
from eventwire.runtime.app import App
from eventwire.testing.app_runs import listed_dead_letters, serving, wait_until
from eventwire.testing.hostile import HostileRun, interleave
from eventwire.testing.hostile import job_body as _job

TOPIC = "hostile.jobs"
JSON = "application/json"


@dataclass(frozen=True)
class Case:
    """One hostile message: ``expect`` is "unreadable" (envelope), "rejected" (dead-lettered by
    the handler path: body, content type or max attempts) or "processed" (valid body)."""

    expect: str
    body: bytes
    row: dict[str, object] = field(default_factory=dict)  # SQLite: columns to break
    message: dict[str, object] = field(default_factory=dict)  # memory: Message fields


SQLITE_CASES: dict[str, Case] = {
    "headers not JSON": Case("unreadable", _job(-1), row={"headers": "{not json"}),
    "headers nested 100,000 deep": Case(
        "unreadable", _job(-2), row={"headers": "[" * 100_000 + "]" * 100_000}
    ),
    "headers a JSON array": Case("unreadable", _job(-3), row={"headers": '["a"]'}),
    "a header value not a string": Case("unreadable", _job(-4), row={"headers": '{"x": 1}'}),
    "headers not UTF-8": Case("unreadable", _job(-5), row={"headers": b'{"x": "\xff"}'}),
    "a header with NUL": Case("unreadable", _job(-6), row={"headers": '{"x": "a\\u0000b"}'}),
    "id not UTF-8": Case("unreadable", _job(-7), row={"msg_id": b"id-\xff\xfe"}),
    "id empty": Case("unreadable", _job(-8), row={"msg_id": ""}),
    "content type not UTF-8": Case("unreadable", _job(-9), row={"content_type": b"app/\xff"}),
    "created not a number": Case("processed", _job(9001), row={"created": "yesterday"}),
    "body not JSON": Case("rejected", b"\x00\xff not json"),
    "body not a Job": Case("rejected", b'{"n": "x"}'),
    "body nested 100,000 deep": Case("rejected", b"[" * 100_000),
    "content type application/x-pickle": Case(
        "rejected", _job(9002), row={"content_type": "application/x-pickle"}
    ),
    "always failing": Case("rejected", _job(9003, fail=True)),
}
MEMORY_CASES: dict[str, Case] = {
    "forged attempt -1000, always failing": Case(
        "rejected", _job(9101, fail=True), message={"headers": {h.ATTEMPT: "-1000"}}
    ),
    "forged attempt of 40 digits": Case(
        "processed", _job(9102), message={"headers": {h.ATTEMPT: "9" * 40}}
    ),
    "forged dead-letter headers": Case(
        "processed", _job(9103), message={"headers": {h.DLQ_REASON: "x", h.DLQ_ATTEMPTS: "99"}}
    ),
    "forged replay group": Case(
        "processed", _job(9104), message={"headers": {h.REPLAY_GROUP: "someone-else"}}
    ),
    "infinite timestamp": Case("processed", _job(9105), message={"timestamp": math.inf}),
    "NaN timestamp": Case("processed", _job(9106), message={"timestamp": math.nan}),
    "a 1,000-character key": Case("processed", _job(9107), message={"key": "k" * 1000}),
    "body not JSON": Case("rejected", b"\x00\xff not json"),
    "body nested 100,000 deep": Case("rejected", b"[" * 100_000),
    "1,000,000-byte body": Case("rejected", b"z" * 1_000_000),
    "content type application/x-pickle": Case(
        "rejected", _job(9108), message={"content_type": "application/x-pickle"}
    ),
}


def _insert_rows(db: Path, rows: list[tuple[str, bytes, dict[str, object]]]) -> None:
    """One raw row per (id, body, broken columns), laid out as the sqlite broker writes."""
    conn = sqlite3.connect(db, timeout=30.0)
    try:
        with conn:
            conn.execute("INSERT OR IGNORE INTO topics (topic) VALUES (?)", (TOPIC,))
            for message_id, body, broken in rows:
                columns: dict[str, object] = {
                    "msg_id": message_id,
                    "content_type": "application/json",
                    "created": time.time(),
                    "headers": "{}",
                    "body": body,
                } | broken
                conn.execute(
                    "INSERT INTO messages (topic, msg_id, content_type, created, headers, body, "
                    "stored_at, dedup) VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
                    (TOPIC, *columns.values(), time.time()),
                )
    finally:
        conn.close()


async def _scenario(
    kind: str,
    url: str,
    cases: dict[str, Case],
    inject: Callable[[App, list[Message]], Awaitable[None] | None],
    unsettled: Callable[[], int],
) -> None:
    """Run the worker over ``cases`` between good messages; ``unsettled()`` counts, once the
    worker has stopped, what the group still holds (returned, delayed, unread)."""
    run = HostileRun()
    app = run.typed_worker(url, TOPIC, name="hostile-embedded")
    async with serving(app) as task:
        sequence, n = interleave(
            (
                Message(body=c.body, id=f"hostile-{i}", **({"content_type": JSON} | c.message))  # type: ignore[arg-type]  # each case's extra Message fields, typed loosely in the case table
                for i, c in enumerate(cases.values())
            ),
            lambda g: Message(body=_job(g), id=f"good-{g}", content_type=JSON),
        )
        outcome = inject(app, sequence)
        if outcome is not None:
            await outcome
        rejected = sum(1 for c in cases.values() if c.expect != "processed")
        # Unreadable rows are dead-lettered by the adapter, the rest by the runtime: the
        # listing below waits for both.
        await wait_until(lambda: len(run.handled) >= n, deadline=60)
        await app.publish(TOPIC, {"n": n})  # still consuming afterwards
        await wait_until(lambda: n in run.handled, deadline=30)
        good_sent = n + 1
        assert not task.done(), "the worker's run task ended"
        assert app.ready
        letters = await listed_dead_letters(url, TOPIC, at_least=rejected, deadline=60)
    left = unsettled()
    bodies = Counter(m.body for m in letters)
    unreadable = sum(1 for m in letters if m.headers[h.DLQ_REASON].startswith(REASON_PREFIX))
    figures = run.figures(cases=len(cases), good_sent=good_sent, letters=letters)
    figures["unsettled"] = left
    figures["consumer task deaths"] = int(task.exception() is not None)
    figures["of which unreadable envelope"] = unreadable
    print(f"{kind} hostile figures:", figures)
    run.check(figures, good_sent=good_sent)
    assert left == 0
    for name, case in cases.items():
        if case.expect == "processed":
            assert run.handled[json.loads(case.body)["n"]] == 1, name
        else:
            assert bodies[case.body] == 1, f"{name}: not dead-lettered with its bytes"
    reasons = sorted(f"{m.body[:16]!r}: {m.headers[h.DLQ_REASON][:60]}" for m in letters)
    assert unreadable == sum(1 for c in cases.values() if c.expect == "unreadable"), reasons
    assert len(letters) == rejected, reasons


async def test_hostile_sqlite_rows_harm_nothing_else(tmp_path: Path) -> None:
    db = tmp_path / "broker.db"
    url = f"sqlite:///{db}?poll=0.02"

    def inject(app: App, sequence: list[Message]) -> None:
        rows = []
        hostile = iter(SQLITE_CASES.values())
        for message in sequence:
            broken = {} if message.id.startswith("good-") else next(hostile).row
            rows.append((message.id, message.body, broken))
        _insert_rows(db, rows)

    def unsettled() -> int:
        conn = sqlite3.connect(db, timeout=30.0)
        try:
            claimed = conn.execute(
                "SELECT COUNT(*) FROM claims WHERE topic = ? AND grp = 'workers'", (TOPIC,)
            ).fetchone()[0]
            unread = conn.execute(
                "SELECT COUNT(*) FROM messages WHERE topic = ? AND seq > (SELECT cursor FROM "
                "consumer_groups WHERE topic = ? AND grp = 'workers')",
                (TOPIC, TOPIC),
            ).fetchone()[0]
        finally:
            conn.close()
        return int(claimed) + int(unread)

    await _scenario("sqlite", url, SQLITE_CASES, inject, unsettled)
    # What an operator sees: `eventwire dlq list` shows every raw dead letter with its reason.
    listing = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "eventwire.cli", "dlq", "list", TOPIC, "-b", url, "--wait", "1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(listing.communicate(), 60)
    assert listing.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    rejected = sum(1 for c in SQLITE_CASES.values() if c.expect != "processed")
    assert lines[-1].startswith(f"{rejected} dead letter(s)"), lines
    unreadable = sum(1 for c in SQLITE_CASES.values() if c.expect == "unreadable")
    assert sum(f"reason={REASON_PREFIX}" in line for line in lines) == unreadable, lines


async def test_hostile_memory_messages_harm_nothing_else() -> None:
    name = f"hostile-{uuid.uuid4().hex[:10]}"

    async def inject(app: App, sequence: list[Message]) -> None:
        await app.broker.publish(TOPIC, *sequence)

    def unsettled() -> int:
        group = hub_for(name).topic(TOPIC).durable_group("workers")
        waiting = len(group.ready) + len(group.delayed) + sum(map(len, group.blocked.values()))
        return waiting + group.topic.end - group._cursor

    try:
        await _scenario("memory", f"memory://{name}", MEMORY_CASES, inject, unsettled)
    finally:
        forget_hub(name)
