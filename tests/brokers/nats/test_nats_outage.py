"""Tests: NATS JetStream through long outages: reconnects never stop, publishes stay bounded.

Private nats-server behind a fault proxy; nothing touches the shared server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest
from nats.aio.client import Client

from eventwire.brokers.catalog import open_broker
from eventwire.brokers.nats.jetstream import JetStreamBroker
from eventwire.brokers.nats.options import MIN_RECONNECT_DELAY
from eventwire.core.contract import Broker
from eventwire.core.errors import PublishError
from eventwire.core.message import Message
from eventwire.testing.fault_proxy import FaultProxy
from eventwire.testing.helpers import scale
from eventwire.testing.spawn_nats import NatsServer

pytestmark = [pytest.mark.integration, pytest.mark.nats, pytest.mark.reconnect, pytest.mark.slow]

NATS_PY_DEFAULT_ATTEMPTS = 60  # nats-py closes the client after this many failed reconnects


def client_of(broker: Broker) -> Client:
    assert isinstance(broker, JetStreamBroker)
    return broker.client


def failed_attempts(caplog: pytest.LogCaptureFixture) -> int:
    """Reconnect attempts reported to the adapter's error callback ("NATS <url>: <error>")."""
    return sum(
        1 for r in caplog.records if r.name == "eventwire.brokers.nats" and r.msg == "NATS %s: %s"
    )


async def until(condition: Callable[[], object], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def test_reconnect_never_gives_up(
    private_nats: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Past nats-py's 60 in the quick run; the full run also passes 1024 tries, where an
    # uncapped 2**tries backoff overflowed and froze the event loop.
    wanted = scale(150, 1200)
    caplog.set_level(logging.DEBUG, logger="eventwire.brokers.nats")
    fastest = f"reconnect_min={MIN_RECONNECT_DELAY}&reconnect_max={MIN_RECONNECT_DELAY}"
    async with FaultProxy("127.0.0.1", private_nats.port) as proxy:
        url = f"nats://127.0.0.1:{proxy.port}?{fastest}"
        async with open_broker(url) as broker, broker.subscribe("ng.t", group="g") as sub:
            nc = client_of(broker)
            assert nc.options["max_reconnect_attempts"] == -1  # lifted after the first connect
            await broker.publish("ng.t", Message(body=b"before"))
            await (await asyncio.wait_for(anext(sub), 10)).ack()
            proxy.refuse()  # the server's port answers with a reset: every try fails
            caplog.clear()
            await proxy.cut()
            started = time.monotonic()
            await until(lambda: failed_attempts(caplog) >= wanted, 180)
            outage = time.monotonic() - started
            assert nc._current_server is not None  # nats-py keeps the server it is trying
            tries = nc._current_server.reconnects  # nats-py's own count of failed tries
            # Still trying: each try to the refusing proxy passes through CONNECTING (nats-py's
            # connect-init runs once the TCP handshake succeeds), between tries RECONNECTING.
            assert nc.is_reconnecting or nc.is_connecting
            assert not nc.is_connected
            assert not nc.is_closed
            assert nc.options["max_reconnect_attempts"] == -1
            proxy.heal()
            healed = time.monotonic()
            fresh = Message(body=b"after the outage")
            await asyncio.wait_for(broker.publish("ng.t", fresh), 30)
            got = await asyncio.wait_for(anext(sub), 30)
            resumed = time.monotonic() - healed
            await got.ack()
    print(
        f"\nNATS never gives up: {failed_attempts(caplog)} failed reconnects logged "
        f"({tries} counted by nats-py) in a {outage:.1f}s outage, consumer got a message "
        f"published after healing {resumed:.2f}s later"
    )
    assert tries > NATS_PY_DEFAULT_ATTEMPTS
    assert got.message.id == fresh.id
    assert resumed <= 10.0


async def test_outage_publishes_wait_then_fail_and_a_full_buffer_fails_at_once(
    private_nats: NatsServer,
) -> None:
    pending_size = 64 * 1024
    async with FaultProxy("127.0.0.1", private_nats.port) as proxy:
        via = f"nats://127.0.0.1:{proxy.port}"
        async with (
            open_broker(private_nats.url) as direct,  # the consumer never loses its link
            direct.subscribe("bb.t", group="g") as sub,
            open_broker(f"{via}?publish_timeout=2") as short,
            open_broker(f"{via}?publish_timeout=60&pending_size={pending_size}") as patient,
        ):
            confirmed: list[Message] = []
            for broker in (short, patient):  # streams known, connections up
                warm = Message(body=b"warm")
                await broker.publish("bb.t", warm)
                confirmed.append(warm)
            proxy.refuse()
            await proxy.cut()
            clients = [client_of(short), client_of(patient)]
            await until(lambda: all(c.is_reconnecting for c in clients), 30)

            started = time.monotonic()
            with pytest.raises(PublishError, match="reconnecting") as timed_out:
                await short.publish("bb.t", Message(body=b"waits, then fails"))
            waited = time.monotonic() - started
            assert timed_out.value.__cause__ is not None

            buffered = Message(body=b"buffered until the link is back")
            waiting = asyncio.create_task(patient.publish("bb.t", buffered))
            await until(lambda: client_of(patient).pending_data_size > 0, 30)
            big = [Message(body=b"x" * 40_000) for _ in range(2)]  # 80 kB > 64 KiB buffer
            started = time.monotonic()
            with pytest.raises(PublishError, match="pending_size=65536") as full:
                await patient.publish("bb.t", *big)
            overflow = time.monotonic() - started
            with pytest.raises(PublishError, match="pending_size"):
                await patient.publish("bb.t", Message(body=b"y" * (pending_size + 1)))
            assert "OutboundBufferLimitError" in repr(full.value.__cause__)
            assert not waiting.done()  # nothing is reported sent without its PubAck

            proxy.heal()
            await asyncio.wait_for(waiting, 60)  # confirmed once the link is back
            confirmed.append(buffered)
            for broker in (short, patient):
                again = Message(body=b"after")
                await broker.publish("bb.t", again)
                confirmed.append(again)
            seen: set[str] = set()
            async with asyncio.timeout(30):
                while not {m.id for m in confirmed} <= seen:
                    delivery = await anext(sub)
                    seen.add(delivery.message.id)
                    await delivery.ack()
    print(
        f"\nNATS outage publish: timed out after {waited:.2f}s (publish_timeout=2), full "
        f"{pending_size} B buffer refused in {overflow:.3f}s (publish_timeout=60), "
        f"{len(confirmed)} confirmed publishes all delivered"
    )
    assert 1.9 <= waited < 15
    assert overflow < 5.0  # at once, not after publish_timeout


async def test_core_publish_into_a_full_reconnect_buffer_fails_at_once(
    private_nats: NatsServer,
) -> None:
    async with FaultProxy("127.0.0.1", private_nats.port) as proxy:
        url = f"nats+core://127.0.0.1:{proxy.port}?pending_size=4096"
        async with open_broker(url) as broker:
            nc = broker.client  # type: ignore[attr-defined]  # NATS adapter's own nats-py client, not on the Broker protocol
            proxy.refuse()
            await proxy.cut()
            await until(lambda: nc.is_reconnecting, 30)
            await broker.publish("core.full", Message(body=b"a" * 3000))  # fits: buffered
            started = time.monotonic()
            with pytest.raises(PublishError, match="not sent") as full:
                await broker.publish("core.full", Message(body=b"b" * 3000))
            assert time.monotonic() - started < 5.0
            assert "OutboundBufferLimitError" in str(full.value)
            assert not nc.is_closed  # still reconnecting, not given up
