"""Testing layer: the small helpers every test module shares (sizes, polling, free ports).

Written once here so that tests, the conformance suite and the spawn helpers agree: the
same environment variable picks the sizes, the same poll loop reports a timeout the same way.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from typing import Final

TEST_SCALE_ENV: Final = "EVENTWIRE_TEST_SCALE"
LOOPBACK: Final = "127.0.0.1"


def full_scale() -> bool:
    """True when EVENTWIRE_TEST_SCALE is "full" (CI's reliability job)."""
    return (os.environ.get(TEST_SCALE_ENV) or "").strip().lower() == "full"


def scale(quick: int, full: int) -> int:
    """``quick`` by default, ``full`` when EVENTWIRE_TEST_SCALE=full."""
    return full if full_scale() else quick


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def wait_until(
    condition: Callable[[], bool],
    timeout: float = 20.0,  # noqa: ASYNC109 - polls with a deadline, reported as AssertionError
    *,
    what: str = "condition",
) -> None:
    """Poll ``condition`` until true, yielding to the loop (every 1 ms, backing off to 50 ms);
    ``AssertionError`` naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.001
    while not condition():
        if loop.time() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout:.1f} s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
