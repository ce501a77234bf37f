"""Process-test worker: an App whose handler records each side effect in a SQLite file.

Run by the tests as ``eventwire run tests/process/worker_app.py:app`` in a real process.
``effects.db`` holds the side effects AND the idempotency store (one file), so an effect made
through ``ctx.effectively_once`` commits in the same transaction as its done-mark;
``progress.db`` holds the handler-started and handler-hung rows.
Configured by environment (set by the test):

* ``PROC_STATE``: directory for ``effects.db``, ``progress.db`` and the stats files
* ``PROC_TOPIC`` / ``PROC_GROUP``: what to consume
* ``PROC_CONCURRENCY``, ``PROC_DELAY`` (seconds the handler sleeps before its side effect)
* ``PROC_IDEMPOTENT`` ("1"/"0"), ``PROC_SHUTDOWN_TIMEOUT``
* ``PROC_EFFECT``: ``transactional`` (``ctx.effectively_once``) or ``plain`` (a write on a
  connection of its own, committed before the runtime records completion)
* ``PROC_HANG_AFTER``: after this many side effects, new handler calls hang before theirs
* ``PROC_CRASH_AT_STATEMENT``: k > 0: after its first transactional effect, the process
  SIGKILLs itself when the store's connection is about to run its k-th next SQL statement
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import json
import os
import signal
import sqlite3
import threading
from pathlib import Path
from typing import Any

from eventwire.reliability.idempotency import SQLiteIdempotencyStore
from eventwire.runtime.app import App
from eventwire.runtime.context import Context

STATE = Path(os.environ["PROC_STATE"])
HANG_AFTER = int(os.environ.get("PROC_HANG_AFTER", "0"))
DELAY = float(os.environ.get("PROC_DELAY", "0"))
TRANSACTIONAL = os.environ.get("PROC_EFFECT", "transactional") == "transactional"
CRASH_AT = int(os.environ.get("PROC_CRASH_AT_STATEMENT", "0"))
EFFECT_SQL = (
    "INSERT INTO effects (message_id, n, runs, pid) VALUES (?, ?, 1, ?) "
    "ON CONFLICT (message_id) DO UPDATE SET runs = runs + 1"
)

app = App(
    name="proc-worker",
    shutdown_timeout=float(os.environ.get("PROC_SHUTDOWN_TIMEOUT", "10")),
    idempotency_store=SQLiteIdempotencyStore(STATE / "effects.db"),
)

_done_here = [0]  # side effects made by this process


class _Writer:
    """One connection to one file, written from worker threads one statement at a time."""

    def __init__(self, name: str) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(STATE / name, timeout=30.0, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        with self._lock, self._conn:
            self._conn.execute(sql, params)

    async def __call__(self, sql: str, *params: object) -> None:
        await asyncio.to_thread(self._write, sql, params)


_progress = _Writer("progress.db")
_plain_effects = _Writer("effects.db")


def _crash_at_statement(conn: sqlite3.Connection, k: int) -> None:
    """SIGKILL this process just before ``conn`` executes its k-th next statement."""
    seen = [0]

    def trace(statement: str) -> None:
        seen[0] += 1
        if seen[0] == k:
            os.kill(os.getpid(), signal.SIGKILL)

    conn.set_trace_callback(trace)


@app.subscriber(
    os.environ["PROC_TOPIC"],
    group=os.environ["PROC_GROUP"],
    concurrency=int(os.environ.get("PROC_CONCURRENCY", "8")),
    idempotent=os.environ.get("PROC_IDEMPOTENT", "1") == "1",
)
async def handle(payload: dict[str, Any], ctx: Context) -> None:
    mid = ctx.message.id
    await _progress("INSERT INTO started (message_id, pid) VALUES (?, ?)", mid, os.getpid())
    if HANG_AFTER and _done_here[0] >= HANG_AFTER:
        await _progress("INSERT INTO hung (message_id, pid) VALUES (?, ?)", mid, os.getpid())
        await asyncio.Event().wait()  # until the test kills this process
    if DELAY:
        await asyncio.sleep(DELAY)
    # The side effect: one row per message id, counting how often it happened.
    params = (mid, payload["n"], os.getpid())
    if TRANSACTIONAL:

        def effect(conn: sqlite3.Connection) -> None:
            conn.execute(EFFECT_SQL, params)
            if CRASH_AT:
                _crash_at_statement(conn, CRASH_AT)

        await ctx.effectively_once(effect)
    else:
        await _plain_effects(EFFECT_SQL, *params)
    _done_here[0] += 1


def _write_stats() -> None:
    path = STATE / f"stats-{os.getpid()}.json"
    path.write_text(json.dumps(dataclasses.asdict(app.stats)))


atexit.register(_write_stats)
