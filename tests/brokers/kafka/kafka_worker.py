"""Tests: a worker process for the Kafka crash test: an App at concurrency 16 with random
handler times, appending ``account seq`` to OUT for every message it finishes, until SIGKILL.

    python kafka_worker.py URL TOPIC GROUP OUT SEED
"""

from __future__ import annotations

import asyncio
import os
import random
import sys

from pydantic import BaseModel

from eventwire import App


class Entry(BaseModel):
    account: str
    seq: int


def build(url: str, topic: str, group: str, out: str, seed: int) -> App:
    app = App(url, name=f"kafka-worker-{os.getpid()}")
    rng = random.Random(seed)
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    @app.subscriber(topic, group=group, concurrency=16, ordered_by="account")
    async def book(entry: Entry) -> None:
        await asyncio.sleep(rng.random() * 0.02)  # uneven handler times: out-of-order finish
        os.write(fd, f"{entry.account} {entry.seq}\n".encode())  # one write: survives SIGKILL

    return app


async def main(url: str, topic: str, group: str, out: str, seed: int) -> None:
    app = build(url, topic, group, out, seed)
    async with app:
        await app.run(install_signal_handlers=True)


if __name__ == "__main__":
    url, topic, group, out, seed = sys.argv[1:6]
    asyncio.run(main(url, topic, group, out, int(seed)))
