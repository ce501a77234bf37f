"""Broker layer: one group member's pending-entries work on Redis (claims, retries, recovery)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Collection
from typing import Any, cast

from eventwire.brokers.redis.link import RedisLink

# (entry id, fields as returned, delivery count): what the subscription admits.
Claimed = tuple[bytes, Any, int]


def consumer_name() -> str:
    """Unique per subscription, readable in XINFO: host, pid and a random suffix."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class PendingWork:
    """Commands on the pending entries list (PEL) and the retry schedule of one consumer.

    Every method returns the entries this consumer now owns and must hand out, with the
    delivery count Redis keeps for them (-> ``Delivery.attempt``). Lua scripts in
    ``scripts.py`` keep each multi-step move atomic on the server.
    """

    def __init__(
        self, link: RedisLink, *, key: str, schedule: str, group: str, consumer: str
    ) -> None:
        self._link = link
        self._key = key
        self._schedule = schedule
        self._group = group
        self._consumer = consumer
        self._claim_idle_ms = max(1, int(link.options.claim_idle * 1000))

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self._link.bounded(self._link.scripts[name](keys=keys, args=args))

    async def schedule(self, entry_id: bytes, delay: float | None) -> None:
        """Park ``entry_id`` (still pending here) until ``delay`` seconds from now."""
        due_ms = int((time.time() + (delay or 0.0)) * 1000)
        await self._link.bounded(self._link.client.zadd(self._schedule, {entry_id: due_ms}))

    async def move_due(self, room: int) -> list[Claimed]:
        """Retries whose time has come, XCLAIMed to this consumer (count + 1)."""
        now_ms = int(time.time() * 1000)
        moved = await self._script(
            "move_due", [self._key, self._schedule], [self._group, self._consumer, now_ms, room]
        )
        return [(i, f, int(c)) for i, f, c in moved]

    async def touch(self, ids: Collection[bytes]) -> None:
        """Reset the idle time of entries we hold, so live members never reclaim them."""
        if ids:
            await self._link.bounded(
                self._link.client.xclaim(
                    self._key, self._group, self._consumer, 0, list(ids), justid=True
                )
            )

    async def reclaim(self, room: int) -> list[Claimed]:
        """Entries of dead members idle for claim_idle (XAUTOCLAIM), retries left alone."""
        out: list[Claimed] = []
        start: bytes | str = "0-0"
        for _ in range(100):  # bounded: 100 pages per round at most
            if room - len(out) <= 0:
                break
            next_start, claimed = await self._script(
                "reclaim",
                [self._key, self._schedule],
                [self._group, self._consumer, self._claim_idle_ms, start, room - len(out)],
            )
            out += [(i, f, int(c)) for i, f, c in claimed]
            if next_start in (b"0-0", "0-0"):
                break
            start = next_start
        return out

    async def sweep(self) -> None:
        """Forget member names that hold nothing and were idle for long (10 x claim_idle)."""
        idle_ms = max(self._claim_idle_ms * 10, 600_000)
        await self._script("sweep", [self._key], [self._group, idle_ms])

    async def recover_own(self, busy: Collection[bytes], room: int) -> list[Claimed]:
        """Entries Redis handed to this consumer in a reply a dead connection swallowed: they
        sit in its PEL unseen. Take them back now (count + 1) instead of after claim_idle;
        ids in ``busy`` (held, being acked or scheduled) and parked retries are left alone."""
        client = self._link.client
        out: list[Claimed] = []
        start = "-"
        for _ in range(100):  # bounded: 50,000 pending entries per recovery at most
            rows = cast(
                "list[dict[str, Any]]",
                await self._link.bounded(
                    client.xpending_range(
                        self._key,
                        self._group,
                        min=start,
                        max="+",
                        count=500,
                        consumername=self._consumer,
                    )
                ),
            )
            counts: dict[bytes, int] = {
                r["message_id"]: int(r["times_delivered"])
                for r in rows
                if r["message_id"] not in busy
            }
            lost: list[Any] = list(counts)[: max(0, room - len(out))]
            if lost:
                scores = await self._link.bounded(client.zmscore(self._schedule, lost))
                lost = [i for i, score in zip(lost, scores, strict=True) if score is None]
            if lost:
                claimed = cast(
                    "list[tuple[bytes, Any]]",
                    await self._link.bounded(
                        client.xclaim(self._key, self._group, self._consumer, 0, lost)
                    ),
                )
                out += [(i, f, counts[i] + 1) for i, f in claimed if f is not None]
            if len(rows) < 500:
                break
            start = "(" + cast("bytes", rows[-1]["message_id"]).decode()
        return out

    async def release(self) -> None:
        """Hand everything this consumer still holds back to the group (due now)."""
        await self._script(
            "release",
            [self._key, self._schedule],
            [self._group, self._consumer, int(time.time() * 1000)],
        )
