"""Helpers for observability tests: a raw-socket HTTP GET and a running app with endpoints."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from eventwire import App


async def http_get(
    port: int, path: str, method: str = "GET", *, accept: str | None = None
) -> tuple[int, str, bytes]:
    """``(status, content type, body)`` of one request over a real TCP socket."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    extra = f"Accept: {accept}\r\n" if accept else ""
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n".encode())
        await writer.drain()
        async with asyncio.timeout(10):
            raw = await reader.read()  # the server closes the connection after answering
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = dict(line.split(": ", 1) for line in lines[1:])
    if method == "HEAD":
        assert body == b""  # Content-Length still says what GET would send
    else:
        assert int(headers["Content-Length"]) == len(body)
    return status, headers["Content-Type"], body


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def broker_url(kind: str, tmp_path: Path) -> str:
    """A named memory hub (shared by clients in this process) or a SQLite file."""
    if kind == "memory":
        return f"memory://obs-{uuid.uuid4().hex[:12]}"
    return f"sqlite:///{tmp_path / 'broker.db'}?poll=0.02"


async def wait_until(predicate: Callable[[], bool], deadline: float = 20.0) -> None:
    """Poll ``predicate`` until true; fail after ``deadline`` seconds (no fixed sleeps)."""
    async with asyncio.timeout(deadline):
        while not predicate():
            await asyncio.sleep(0.005)


@asynccontextmanager
async def running(app: App, **run_options: Any) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``app`` (already connected) in the background until every subscription exists;
    stop it gracefully on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop, **run_options))
    ready = asyncio.create_task(app.wait_ready())
    await asyncio.wait({task, ready}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    if task.done():
        task.result()  # raises why the app stopped
    assert app.ready, "app did not subscribe in time"
    try:
        yield task
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await task
