"""CLI layer: ``eventwire run --wait-for-broker``: wait for a broker that is not up yet."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Final

from eventwire.cli import resolve
from eventwire.cli.errors import CLIError, scrub
from eventwire.core.errors import BrokerError

log = logging.getLogger("eventwire.cli")

FIRST_DELAY: Final = 0.5  # seconds before the second try
MAX_DELAY: Final = 5.0  # the backoff's ceiling
UNAVAILABLE_EXIT: Final = 1  # not a usage error: the same command may work later


async def wait_until_reachable(
    resolved: resolve.ResolvedBroker,
    within: float,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    advice: str = "start it, check the URL, or raise --wait-for-broker",
) -> None:
    """Connect to the broker, trying again with capped exponential backoff (each delay drawn
    from [d/2, d]) for up to ``within`` seconds; one INFO line per failed try; a ``CLIError``
    (exit 1) naming the last cause once time is up. A wrong URL fails at the first try."""
    deadline = clock() + within
    attempt = 0
    while True:
        attempt += 1
        try:
            await _connect_once(resolved)
        except (OSError, BrokerError) as exc:
            cause = scrub(_reason(exc), resolved.url.password)
            left = deadline - clock()
            if left <= 0:
                tries = f"{attempt} tr{'y' if attempt == 1 else 'ies'}"
                raise CLIError(
                    f"broker at {resolved.url} not reachable after {within:g} s ({tries}): "
                    f"{cause}; {advice}",
                    exit_code=UNAVAILABLE_EXIT,
                ) from None
            ceiling = min(MAX_DELAY, FIRST_DELAY * 2 ** min(attempt - 1, 16))
            delay = min(random.uniform(ceiling / 2, ceiling), left)
            log.info(
                "broker at %s not ready (try %d: %s); next try in %.1f s, giving up in %.0f s",
                resolved.url,
                attempt,
                cause,
                delay,
                left,
            )
            await sleep(delay)
            continue
        if attempt > 1:
            log.info("broker at %s is up after %d tries", resolved.url, attempt)
        return


async def _connect_once(resolved: resolve.ResolvedBroker) -> None:
    from eventwire.brokers.catalog import open_broker

    async with open_broker(resolved.url):
        pass


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"
