"""Process tests: a rig that starts worker processes and reads the broker and effect files.

``effects.db`` is also the workers' idempotency store: effects made through
``ctx.effectively_once`` share a transaction with the done-mark. Progress rows (handler
started, handler hung) go to ``progress.db``: writing them into the same file would make the
worker's connections wait on each other's write lock and stall the handlers.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from eventwire.brokers.catalog import open_broker
from eventwire.core.message import Message

WORKER_APP = Path(__file__).with_name("worker_app.py")
TOPIC = "proc.jobs"
GROUP = "workers"

_EFFECTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS effects (
    message_id TEXT PRIMARY KEY, n INTEGER, runs INTEGER, pid INTEGER
);
"""
_PROGRESS_SCHEMA = """
CREATE TABLE IF NOT EXISTS started (message_id TEXT, pid INTEGER);
CREATE TABLE IF NOT EXISTS hung (message_id TEXT, pid INTEGER);
"""


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Rig:
    """One broker file, one effects file, and the worker processes started on them."""

    dir: Path
    lease: float = 2.0
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"sqlite:///{self.dir / 'broker.db'}?lease={self.lease}"

    def publish(self, count: int) -> list[str]:
        async def go() -> list[str]:
            messages = [
                Message(body=json.dumps({"n": n}).encode(), content_type="application/json")
                for n in range(count)
            ]
            async with open_broker(self.url) as broker:
                for start in range(0, count, 500):
                    await broker.publish(TOPIC, *messages[start : start + 500])
            return [m.id for m in messages]

        return asyncio.run(go())

    def start_worker(self, **env: str | int | float) -> subprocess.Popen[bytes]:
        full_env = {
            **os.environ,
            "PROC_STATE": str(self.dir),
            "PROC_TOPIC": TOPIC,
            "PROC_GROUP": GROUP,
            **{k: str(v) for k, v in env.items()},
        }
        log = (self.dir / f"worker-{len(self.workers)}.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "eventwire.cli", "run", f"{WORKER_APP}:app", "-b", self.url],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.workers.append(worker)
        return worker

    def log(self, worker: subprocess.Popen[bytes]) -> str:
        return (self.dir / f"worker-{self.workers.index(worker)}.log").read_text()

    def query(self, db: str, sql: str, *params: object) -> int:
        conn = sqlite3.connect(f"file:{self.dir / db}?mode=ro", uri=True, timeout=30.0)
        try:
            if db == "progress.db":  # its queries may join the effects
                conn.execute(
                    "ATTACH DATABASE ? AS fx", (f"file:{self.dir / 'effects.db'}?mode=ro",)
                )
            return int(conn.execute(sql, params).fetchone()[0] or 0)
        finally:
            conn.close()

    def effects(self) -> tuple[int, int]:
        """(distinct messages with a side effect, extra runs beyond the first)."""
        distinct = self.query("effects.db", "SELECT COUNT(*) FROM effects")
        extra = self.query("effects.db", "SELECT SUM(runs - 1) FROM effects")
        return distinct, extra

    def count(self, table: str) -> int:
        return self.query("progress.db", f"SELECT COUNT(*) FROM {table}")

    def in_flight(self, pid: int) -> int:
        """Handler calls ``pid`` started whose side effect is not (yet) in ``effects``."""
        return self.query(
            "progress.db",
            "SELECT COUNT(DISTINCT message_id) FROM started s WHERE pid = ? AND NOT EXISTS "
            "(SELECT 1 FROM fx.effects e WHERE e.message_id = s.message_id)",
            pid,
        )

    def leased(self) -> int:
        """Claims currently held by some consumer (handed out, unsettled)."""
        return self.query(
            "broker.db",
            "SELECT COUNT(*) FROM claims WHERE topic = ? AND grp = ? AND consumer IS NOT NULL",
            TOPIC,
            GROUP,
        )

    def unsettled(self) -> int:
        """Messages the group has not settled: open claims plus never-claimed messages."""
        claims = self.query(
            "broker.db", "SELECT COUNT(*) FROM claims WHERE topic = ? AND grp = ?", TOPIC, GROUP
        )
        unclaimed = self.query(
            "broker.db",
            "SELECT COUNT(*) FROM messages m JOIN consumer_groups g ON g.topic = m.topic "
            "WHERE m.topic = ? AND g.grp = ? AND m.seq > g.cursor",
            TOPIC,
            GROUP,
        )
        return claims + unclaimed

    def stats(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for path in self.dir.glob("stats-*.json"):
            for name, value in json.loads(path.read_text()).items():
                totals[name] = totals.get(name, 0) + int(value)
        return totals

    def stop(self, worker: subprocess.Popen[bytes], timeout: float = 15.0) -> tuple[int, float]:
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=timeout)
        return code, time.monotonic() - started


def make_rig(directory: Path, *, lease: float = 2.0) -> Rig:
    """A rig in ``directory`` with an empty effects file."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, schema in (("effects.db", _EFFECTS_SCHEMA), ("progress.db", _PROGRESS_SCHEMA)):
        conn = sqlite3.connect(directory / name)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(schema)
        conn.close()
    return Rig(dir=directory, lease=lease)
