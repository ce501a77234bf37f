"""Tests: helpers for the NATS adapter tests (unique stream prefixes, cleanup, scale)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import nats

from eventwire.testing.helpers import full_scale

SHARED = "127.0.0.1:4222"
FULL = full_scale()


def new_prefix() -> str:
    return f"EWT{uuid.uuid4().hex[:8]}_"


def url_for(hostport: str, prefix: str, scheme: str = "nats", **options: object) -> str:
    # The subjects get the test's own prefix too: two runs of one test at once on the shared
    # server (other worktrees) would otherwise bind the same subject ("ew.rel.poison") to two
    # streams, which JetStream refuses ("subjects overlap with an existing stream").
    own = {"stream_prefix": prefix, "prefix": prefix.rstrip("_").lower(), **options}
    query = "&".join(f"{k}={v}" for k, v in own.items())
    return f"{scheme}://{hostport}?{query}"


async def delete_streams(hostport: str, prefix: str) -> None:
    """Remove the streams a test created (never anything else on the shared server)."""
    with contextlib.suppress(Exception):
        nc = await nats.connect(f"nats://{hostport}", max_reconnect_attempts=1)
        try:
            js = nc.jetstream()
            for info in await js.streams_info():
                if info.config.name and info.config.name.startswith(prefix):
                    await js.delete_stream(info.config.name)
        finally:
            await nc.close()


@contextlib.asynccontextmanager
async def stream_prefix(hostport: str = SHARED) -> AsyncIterator[str]:
    prefix = new_prefix()
    try:
        yield prefix
    finally:
        await delete_streams(hostport, prefix)


async def stream_messages(hostport: str, stream: str) -> int:
    """How many messages ``stream`` holds (0 if it does not exist)."""
    nc = await nats.connect(f"nats://{hostport}", max_reconnect_attempts=1)
    try:
        try:
            info = await nc.jetstream().stream_info(stream)
        except nats.js.errors.NotFoundError:
            return 0
        return int(info.state.messages)
    finally:
        await nc.close()


def header_block(*lines: bytes, status: bytes = b"NATS/1.0") -> bytes:
    """A NATS/1.0 header block as a producer writes it: status line, header lines, blank line."""
    return status + b"\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


async def raw_publish(hostport: str, subject: str, frames: list[tuple[bytes, bytes]]) -> None:
    """HPUB each ``(header block, body)`` to ``subject`` on a plain socket, bytes as given (no
    client library checks them), and return once the server has read them all (PING/PONG)."""
    host, port = hostport.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    await reader.readline()  # INFO
    writer.write(b'CONNECT {"verbose":false,"headers":true}\r\n')
    for headers, body in frames:
        size = len(headers) + len(body)
        writer.write(
            f"HPUB {subject} {len(headers)} {size}\r\n".encode() + headers + body + b"\r\n"
        )
    writer.write(b"PING\r\n")
    await writer.drain()
    while b"PONG" not in await reader.readline():
        pass
    writer.close()
