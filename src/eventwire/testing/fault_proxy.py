"""Testing layer: an asyncio TCP fault proxy that cuts, resets, blackholes or slows connections.

Put it between a client and a broker (``url_via(proxy.host, proxy.port)``) and break the
network on purpose, from the test's own event loop::

    async with FaultProxy("127.0.0.1", 6379) as proxy:
        broker = open_broker(f"redis://{proxy.host}:{proxy.port}/0")
        await proxy.cut()              # RST every open connection (new ones still work)
        proxy.reset_after(4096)        # each connection dies after 4 KiB more traffic
        proxy.blackhole()              # open sockets stay open, bytes vanish (half-open)
        proxy.set_latency(0.05)        # 50 ms each way
        proxy.heal()                   # back to a clean pipe
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Self

from eventwire.core.lifetime import ClosesOnExit

_CHUNK = 64 * 1024


@dataclass(eq=False)
class _Link:
    """One proxied connection: client side, upstream side, and the bytes moved so far."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    moved: int = 0
    blackholed: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            _rst(writer)

    def close(self) -> None:
        """End both sides cleanly (FIN after what is still buffered)."""
        for writer in (self.client, self.upstream):
            writer.close()


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), like a crashed peer or a middlebox reset."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy(ClosesOnExit):
    """Forwards ``host:port`` (a free loopback port) to ``upstream`` until told to misbehave.

    Faults: ``cut()`` resets every open connection; ``reset_after(n)`` resets each
    connection once ``n`` more bytes passed through it; ``blackhole()`` keeps every socket
    open but drops all their bytes both ways (what a dead peer behind a NAT looks like);
    ``set_latency(s)`` delays every chunk by ``s`` each way; ``refuse()`` makes new
    connections fail at once (a stopped broker); ``heal()`` undoes all but past cuts.
    """

    def __init__(self, upstream_host: str, upstream_port: int, *, host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = 0
        self.accepted = 0  # connections accepted since start (reconnects show up here)
        self.cuts = 0
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._blackhole = False
        self._refuse = False
        self._latency = 0.0
        self._reset_budget: int | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def open_connections(self) -> int:
        return len(self._links)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await self.cut()
        # Handlers still connecting upstream hold an accepted socket of their own: cancel
        # them and wait, so each one closes it (a socket left to the GC warns in a later test).
        handlers = list(self._handlers)
        for handler in handlers:
            handler.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(OSError):
                await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    # -- faults --------------------------------------------------------------------------

    async def cut(self) -> int:
        """Reset every open connection now; returns how many were cut."""
        links = list(self._links)
        self._links.clear()
        for link in links:
            link.abort()
            for task in link.tasks:
                task.cancel()
        for link in links:
            await asyncio.gather(*link.tasks, return_exceptions=True)
        self.cuts += 1
        return len(links)

    def reset_after(self, nbytes: int | None) -> None:
        """Reset each connection once ``nbytes`` more bytes went through it (None: never)."""
        self._reset_budget = nbytes
        for link in self._links:
            link.moved = 0

    def blackhole(self, *, new_connections: bool = False) -> None:
        """Silently drop every byte of the connections open now (they stay open: half-open).

        With ``new_connections`` later connections are swallowed too (a dead network);
        without it a client that notices and reconnects gets through (a dead path).
        """
        for link in self._links:
            link.blackholed = True
        self._blackhole = new_connections

    def set_latency(self, seconds: float) -> None:
        self._latency = max(0.0, seconds)

    def refuse(self, on: bool = True) -> None:
        self._refuse = on

    def heal(self) -> None:
        self._blackhole = self._refuse = False
        self._latency = 0.0
        self._reset_budget = None

    # -- plumbing ------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        link: _Link | None = None
        try:
            if self._refuse:
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                return
            self.accepted += 1
            link = _Link(writer, up_writer, blackholed=self._blackhole)
            self._links.add(link)
            link.tasks = [
                asyncio.create_task(self._pump(link, reader, up_writer)),
                asyncio.create_task(self._pump(link, up_reader, writer)),
            ]
            # One direction ending ends the connection: a peer that closed or reset must be
            # seen by the other side at once, not when that side next sends (half-open).
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # Only aclose() cancels a handler. Ending normally matters: asyncio 3.11's stream
            # server calls task.exception() on its handler and logs the CancelledError.
            pass
        finally:
            self._handlers.discard(handler)
            if link is None:
                _rst(writer)
            else:
                for task in link.tasks:
                    task.cancel()
                await asyncio.gather(*link.tasks, return_exceptions=True)
                if link in self._links:
                    self._links.discard(link)
                    link.close()
                else:
                    link.abort()  # cut or reset: idempotent, makes sure both sockets are gone

    async def _pump(
        self, link: _Link, source: asyncio.StreamReader, sink: asyncio.StreamWriter
    ) -> None:
        # A queue between reader and writer keeps order under latency without slowing reads.
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        writer = asyncio.create_task(self._drain(link, queue, sink))
        try:
            while True:
                data = await source.read(_CHUNK)
                if not data:
                    break
                if link.blackholed:
                    continue  # swallowed: the peer never hears about it
                if self._reset_budget is not None:
                    link.moved += len(data)
                    if link.moved > self._reset_budget:
                        self._reset(link)
                        return
                queue.put_nowait((time.monotonic() + self._latency, data))
            queue.put_nowait(None)
            await writer  # the bytes read before the end still reach the other side
        except OSError:
            self._reset(link)  # a reset on one side is a reset on the other
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await writer

    def _reset(self, link: _Link) -> None:
        self._links.discard(link)
        link.abort()

    async def _drain(
        self,
        link: _Link,
        queue: asyncio.Queue[tuple[float, bytes] | None],
        sink: asyncio.StreamWriter,
    ) -> None:
        while (item := await queue.get()) is not None:
            due, data = item
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if not link.blackholed:
                sink.write(data)
                await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
