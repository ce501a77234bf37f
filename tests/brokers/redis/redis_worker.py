"""A group member in its own process that takes deliveries and never settles them (then is
killed by the test): ``python redis_worker.py URL TOPIC GROUP COUNT``."""

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
                print("HELD", len(held), flush=True)
                await asyncio.Event().wait()  # hold them until SIGKILL


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
