"""Tests: a SIGKILLed worker's unsettled message comes back after the broker's lease setting
(SQLite ``lease``, Redis ``claim_idle``, JetStream ``ack_wait``), and a shorter one is honoured."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventwire.brokers.catalog import open_broker
from eventwire.core.message import Message

SETTING = 2.0  # seconds: the shortened lease / claim_idle / ack_wait under test
SLACK = 10.0  # generous upper bound on top of it (a loaded 2-core machine)

CHILD = """
import asyncio, sys
from eventwire.brokers.catalog import open_broker

async def main() -> None:
    async with open_broker(sys.argv[1]) as broker:
        async with broker.subscribe(sys.argv[2], group="workers") as deliveries:
            delivery = await anext(deliveries)
            print("holding", delivery.message.id, flush=True)
            await asyncio.sleep(3600)  # never settles: SIGKILLed while holding it

asyncio.run(main())
"""


@pytest.fixture(params=["sqlite", "redis", "nats"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    tag = uuid.uuid4().hex[:10]
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lease.db'}?lease={SETTING}&poll=0.05"
    elif request.param == "redis":
        from eventwire.testing.spawn import scrubbed_keys

        async with scrubbed_keys("redis://127.0.0.1:6379/0", f"ewk{tag}:*"):
            yield f"redis://127.0.0.1:6379/0?prefix=ewk{tag}:&claim_idle={SETTING}&block=0.5"
    else:
        yield f"nats://127.0.0.1:4222?stream_prefix=EWK{tag}_&prefix=ewk{tag}&ack_wait={SETTING}"
        import nats

        nc = await nats.connect("nats://127.0.0.1:4222")
        try:
            js = nc.jetstream()
            for info in await js.streams_info():
                if info.config.name and info.config.name.startswith(f"EWK{tag}_"):
                    await js.delete_stream(info.config.name)
        finally:
            await nc.close()


@pytest.mark.integration
async def test_a_killed_workers_message_returns_after_the_shorter_setting(url: str) -> None:
    topic = "lease.jobs"
    sent = Message(body=b"work")
    async with open_broker(url) as broker:
        async with broker.subscribe(topic, group="workers"):
            pass  # the group exists before the message
        await broker.publish(topic, sent)
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, url, topic], stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 30)
            assert line.split() == ["holding", sent.id]
        finally:
            child.kill()
            child.communicate()
        killed = time.monotonic()
        async with broker.subscribe(topic, group="workers") as deliveries:
            delivery = await asyncio.wait_for(anext(deliveries), SETTING + SLACK)
            back_after = time.monotonic() - killed
            await delivery.ack()
    assert delivery.message.id == sent.id
    assert delivery.attempt == 2
    # Not before the setting (the lease still held it), and long before the 30 s default.
    assert SETTING * 0.5 <= back_after <= SETTING + SLACK
