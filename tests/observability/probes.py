"""Helpers for observability tests: a raw-socket HTTP GET and a running app with endpoints."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

# Running an App in a test: the one helper every test directory uses.
from eventwire.testing.app_runs import running, wait_until
from eventwire.testing.helpers import free_port

__all__ = ["broker_url", "free_port", "http_get", "running", "wait_until"]


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


def broker_url(kind: str, tmp_path: Path) -> str:
    """A named memory hub (shared by clients in this process) or a SQLite file."""
    if kind == "memory":
        return f"memory://obs-{uuid.uuid4().hex[:12]}"
    return f"sqlite:///{tmp_path / 'broker.db'}?poll=0.02"
