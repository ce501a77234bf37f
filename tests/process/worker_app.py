"""Process-test worker: an App whose handler records each side effect in a SQLite file.

Run by the tests as ``eventwire run tests/process/worker_app.py:app`` in a real process.
Configured by environment (set by the test):

* ``PROC_STATE``: directory for ``effects.db``, the idempotency store and stats files
* ``PROC_TOPIC`` / ``PROC_GROUP``: what to consume
* ``PROC_CONCURRENCY``, ``PROC_DELAY`` (seconds the handler sleeps before its side effect)
* ``PROC_IDEMPOTENT`` ("1"/"0"), ``PROC_SHUTDOWN_TIMEOUT``
* ``PROC_HANG_AFTER``: after this many side effects, new handler calls hang before theirs,
  so a SIGKILL lands while the worker holds leased, unfinished messages (never mid-write)
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import json
import os
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

app = App(
    name="proc-worker",
    shutdown_timeout=float(os.environ.get("PROC_SHUTDOWN_TIMEOUT", "10")),
    idempotency_store=SQLiteIdempotencyStore(STATE / "idempotency.db"),
)

_lock = threading.Lock()
_conn = sqlite3.connect(STATE / "effects.db", timeout=30.0, check_same_thread=False)
_conn.execute("PRAGMA journal_mode=WAL")
_done_here = [0]  # side effects made by this process


def _write(sql: str, *params: object) -> None:
    with _lock, _conn:
        _conn.execute(sql, params)


async def _record(sql: str, *params: object) -> None:
    await asyncio.to_thread(_write, sql, *params)


@app.subscriber(
    os.environ["PROC_TOPIC"],
    group=os.environ["PROC_GROUP"],
    concurrency=int(os.environ.get("PROC_CONCURRENCY", "8")),
    idempotent=os.environ.get("PROC_IDEMPOTENT", "1") == "1",
)
async def handle(payload: dict[str, Any], ctx: Context) -> None:
    mid = ctx.message.id
    await _record("INSERT INTO started (message_id, pid) VALUES (?, ?)", mid, os.getpid())
    if HANG_AFTER and _done_here[0] >= HANG_AFTER:
        await _record("INSERT INTO hung (message_id, pid) VALUES (?, ?)", mid, os.getpid())
        await asyncio.Event().wait()  # until the test kills this process
    if DELAY:
        await asyncio.sleep(DELAY)
    # The side effect: one row per message id, counting how often it happened.
    await _record(
        "INSERT INTO effects (message_id, n, runs, pid) VALUES (?, ?, 1, ?) "
        "ON CONFLICT (message_id) DO UPDATE SET runs = runs + 1",
        mid,
        payload["n"],
        os.getpid(),
    )
    _done_here[0] += 1


def _write_stats() -> None:
    path = STATE / f"stats-{os.getpid()}.json"
    path.write_text(json.dumps(dataclasses.asdict(app.stats)))


atexit.register(_write_stats)
