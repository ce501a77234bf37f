"""Tests: a consume-transform-produce process for the Kafka transaction test: reads IN with
GROUP one delivery at a time and, in one transaction per delivery, publishes its output to
OUT and commits its offset; runs until SIGKILL.

    python kafka_pipeline.py URL IN OUT GROUP
"""

from __future__ import annotations

import asyncio
import sys

from eventwire.brokers.catalog import open_broker
from eventwire.brokers.kafka.broker import KafkaBroker
from eventwire.core.message import Message


async def main(url: str, source: str, target: str, group: str) -> None:
    broker = open_broker(url)
    assert isinstance(broker, KafkaBroker)
    async with broker, broker.subscribe(source, group=group, prefetch=1) as deliveries:
        async for delivery in deliveries:
            async with broker.transaction(delivery) as tx:
                body = b"out:" + delivery.message.body
                await tx.publish(target, Message(body=body, key=delivery.message.key))
                await asyncio.sleep(0.01)  # widens the window a kill lands in mid-transaction


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
