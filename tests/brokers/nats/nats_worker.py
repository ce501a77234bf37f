"""Tests: a consumer process that takes N deliveries, never settles them, then waits to die."""

from __future__ import annotations

import asyncio
import sys

from eventwire.brokers.catalog import open_broker


async def main(url: str, topic: str, group: str, count: int) -> None:
    async with (
        open_broker(url) as broker,
        broker.subscribe(topic, group=group, prefetch=count) as sub,
    ):
        held = []
        async for delivery in sub:
            held.append(delivery)
            if len(held) == count:
                print(f"held {count}", flush=True)
                await asyncio.sleep(3600)  # killed here, with every delivery unsettled


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
