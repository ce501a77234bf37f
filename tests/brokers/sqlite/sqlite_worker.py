"""Tests: a consumer process for the multi-process sqlite tests (run as a script, not collected).

Usage: python sqlite_worker.py URL TOPIC GROUP MODE
MODE "consume": ack every message, print its body, exit on a body of b"stop".
MODE "hold": print "holding <n>" once a full prefetch is claimed, then never settle (the test
kills the process with SIGKILL).
"""

from __future__ import annotations

import asyncio
import sys

from eventwire.brokers.catalog import open_broker


async def main(url: str, topic: str, group: str, mode: str) -> None:
    broker = open_broker(url)
    async with broker, broker.subscribe(topic, group=group, prefetch=10) as sub:
        print("ready", flush=True)
        held = 0
        async for delivery in sub:
            body = delivery.message.body.decode()
            if mode == "hold":
                held += 1
                if held == 10:
                    print(f"holding {held}", flush=True)
                    await asyncio.Event().wait()
                continue
            if body == "stop":
                await delivery.ack()
                return
            await asyncio.sleep(0.001)  # a little work, so both workers get a share
            await delivery.ack()
            print(body, flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
