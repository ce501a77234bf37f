"""The TCP fault proxy against a local echo server: forward, cut, reset, blackhole, latency."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator

import pytest

from eventwire.testing.fault_proxy import FaultProxy
from eventwire.testing.spawn import free_port, wait_for_port


@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, int]]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield "127.0.0.1", int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()


async def roundtrip(proxy: FaultProxy, payload: bytes, timeout: float = 10.0) -> bytes:
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), timeout)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_forwards_both_ways(echo: tuple[str, int]) -> None:
    async with FaultProxy(*echo) as proxy:
        assert proxy.port != echo[1]
        assert await roundtrip(proxy, b"hello" * 10_000) == b"hello" * 10_000
        assert proxy.accepted == 1


async def test_cut_resets_open_connections_and_accepts_new_ones(echo: tuple[str, int]) -> None:
    async with FaultProxy(*echo) as proxy:
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        assert await proxy.cut() == 1
        with contextlib.suppress(ConnectionError):
            writer.write(b"again")
            await writer.drain()
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(5), 10)
        writer.close()
        assert await roundtrip(proxy, b"fresh") == b"fresh"
        assert proxy.cuts == 1


async def test_reset_after_n_bytes(echo: tuple[str, int]) -> None:
    async with FaultProxy(*echo) as proxy:
        proxy.reset_after(1000)
        assert await roundtrip(proxy, b"x" * 100) == b"x" * 100
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await roundtrip(proxy, b"x" * 5000)
        proxy.heal()
        assert await roundtrip(proxy, b"y" * 5000) == b"y" * 5000


async def test_blackhole_keeps_sockets_open_but_silent(echo: tuple[str, int]) -> None:
    async with FaultProxy(*echo) as proxy:
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(b"alive")
        assert await reader.readexactly(5) == b"alive"  # the link exists on the proxy now
        proxy.blackhole()
        writer.write(b"into the void")
        await writer.drain()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.3)
        assert not reader.at_eof(), "a blackhole must not close the socket"
        assert proxy.open_connections == 1
        assert await roundtrip(proxy, b"new path") == b"new path"  # only old links are dead
        proxy.blackhole(new_connections=True)
        with pytest.raises(TimeoutError):
            await roundtrip(proxy, b"dead network", timeout=0.3)
        writer.close()


async def test_latency_delays_each_direction(echo: tuple[str, int]) -> None:
    async with FaultProxy(*echo) as proxy:
        proxy.set_latency(0.1)
        started = time.monotonic()
        assert await roundtrip(proxy, b"slow") == b"slow"
        assert time.monotonic() - started >= 0.19  # 0.1 s there and 0.1 s back


async def test_refuse_then_heal(echo: tuple[str, int]) -> None:
    async with FaultProxy(*echo) as proxy:
        proxy.refuse()
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await roundtrip(proxy, b"nope")
        proxy.heal()
        assert await roundtrip(proxy, b"yes") == b"yes"


async def test_upstream_down_means_refused(echo: tuple[str, int]) -> None:
    async with FaultProxy("127.0.0.1", free_port()) as proxy:
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await roundtrip(proxy, b"nobody home")


async def test_wait_for_port_times_out_on_closed_port() -> None:
    with pytest.raises(TimeoutError):
        await wait_for_port("127.0.0.1", free_port(), 0.3)


async def _one_shot_upstream(
    action: str,
) -> tuple[asyncio.Server, tuple[str, int]]:
    """An upstream that answers once, then closes (FIN) or resets (RST) the connection."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(2)
        writer.write(b"ok")
        await writer.drain()
        if action == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, ("127.0.0.1", int(server.sockets[0].getsockname()[1]))


@pytest.mark.parametrize("action", ["close", "reset"])
async def test_upstream_end_reaches_an_idle_client(action: str) -> None:
    # The half-open bug: an upstream reset left the client side open until the client sent.
    server, address = await _one_shot_upstream(action)
    async with server, FaultProxy(*address) as proxy:
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(b"hi")
        assert await reader.readexactly(2) == b"ok"
        # The client sends nothing more; the end of the upstream must reach it by itself.
        with contextlib.suppress(ConnectionError):
            assert await asyncio.wait_for(reader.read(1), 5) == b""
        deadline = time.monotonic() + 5
        while proxy.open_connections:
            assert time.monotonic() < deadline, "the link outlived both of its sides"
            await asyncio.sleep(0.01)
        writer.close()


async def test_close_ends_every_client_connection_also_those_still_connecting() -> None:
    # Handlers still connecting upstream when the proxy closed kept their accepted socket,
    # which was left to the garbage collector and warned (ResourceWarning) in a later test.
    upstream = socket.socket()
    upstream.bind(("127.0.0.1", 0))
    upstream.listen(0)  # never accepted: once the queue is full, further connects hang
    clients: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        async with FaultProxy(*upstream.getsockname()) as proxy:
            for _ in range(5):
                clients.append(await asyncio.open_connection(proxy.host, proxy.port))  # noqa: PERF401
            deadline = time.monotonic() + 5
            while proxy.open_connections + len(proxy._handlers) < 5:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            assert proxy._handlers, "some handlers must still be connecting upstream"
        for reader, _ in clients:
            with contextlib.suppress(ConnectionError):
                assert await asyncio.wait_for(reader.read(1), 5) == b""
    finally:
        for _, writer in clients:
            writer.close()
        upstream.close()
