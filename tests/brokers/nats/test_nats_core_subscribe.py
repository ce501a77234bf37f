"""Core NATS: when ``subscribe()`` returns, the server has the SUB (root cause of the
"got 199 of 200" conformance flake: nats-py's flush() PING overtook the queued SUB)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from brokers.nats.nats_support import SHARED
from eventwire.brokers.catalog import open_broker
from eventwire.core.message import Message

pytestmark = [pytest.mark.integration, pytest.mark.nats]


class RecordingRelay:
    """A TCP relay to the shared nats-server that notes the client's protocol verbs in the
    order they are forwarded to the server."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bool
    ) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if record:
                    for line in data.split(b"\r\n"):
                        verb = line.split(b" ")[0]
                        if verb in {b"SUB", b"PING", b"PUB", b"HPUB", b"CONNECT"}:
                            self.sent.append(verb.decode())
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = SHARED.split(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        for task in (
            asyncio.create_task(self._pipe(reader, up_writer, True)),
            asyncio.create_task(self._pipe(up_reader, writer, False)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[RecordingRelay]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def test_subscribe_returns_only_after_the_server_has_the_sub() -> None:
    relay = RecordingRelay()
    async with relay.running():
        url = f"nats+core://127.0.0.1:{relay.port}"
        async with open_broker(url) as broker:
            relay.sent.clear()
            async with broker.subscribe("core.barrier", group="g") as sub:
                at_return = list(relay.sent)
                # The PONG that ended subscribe() answered a PING forwarded after the SUB.
                assert "SUB" in at_return, at_return
                assert at_return.index("SUB") < len(at_return) - 1 - at_return[::-1].index(
                    "PING"
                ), at_return
                # And a message from another connection right now is delivered.
                async with open_broker(f"nats+core://{SHARED}") as other:
                    await other.publish("core.barrier", Message(body=b"first"))
                    async with asyncio.timeout(10):
                        delivery = await anext(sub)
                assert delivery.message.body == b"first"
