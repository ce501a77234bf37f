"""Broker layer: one nats-py connection per broker, never giving up, with redacted logging."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client

from eventwire.brokers.nats.frames import TolerantClient
from eventwire.brokers.nats.options import NatsOptions
from eventwire.core.backoff import Backoff
from eventwire.core.errors import ConnectionLostError
from eventwire.core.url import BrokerURL

log = logging.getLogger("eventwire.brokers.nats")


def scrub(text: str, url: BrokerURL) -> str:
    """``text`` with the URL's password (and any URL credentials) masked."""
    return url.scrub(text)


def backoff_handler(options: NatsOptions) -> Callable[..., tuple[Any, float]]:
    """A nats-py reconnect hook: per server, ``reconnect_min`` doubling up to ``reconnect_max``
    by its failed tries, each wait x0.5-1 (``core.backoff``, which never overflows: a raising
    hook makes nats-py retry the hook at once, forever, without yielding)."""
    backoff = Backoff(initial=options.reconnect_min, cap=options.reconnect_max, jitter=0.5)

    def choose(servers: list[Any], _info: dict[str, Any]) -> tuple[Any, float]:
        server = min(servers, key=lambda s: s.reconnects)
        return server, backoff.delay(server.reconnects + 1)

    return choose


async def open_connection(url: BrokerURL, options: NatsOptions, *, name: str) -> Client:
    """A connected nats-py client that reconnects forever and notices a dead link quickly."""
    secret = url.secret().replace("nats+core://", "nats://", 1)

    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(scrub(f"{type(exc).__name__}: {exc}", url))
        # Before the first connect succeeds the failure is raised to the caller as one error;
        # logging each try too would repeat it (and flood a CLI's one-line error).
        level = logging.WARNING if clients else logging.DEBUG
        log.log(level, "NATS %s: %s", url, errors[-1])

    clients: list[Client] = []

    async def on_disconnect() -> None:
        if clients and clients[0].is_closed:
            return  # our own aclose(), not an outage
        log.warning("NATS %s: disconnected, reconnecting", url)

    async def on_reconnect() -> None:
        log.info("NATS %s: reconnected", url)

    try:
        # Not nats.connect(): its Client dies on a header block a producer can forge.
        client = TolerantClient()
        await client.connect(
            secret,
            name=name,
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            allow_reconnect=True,
            # The first connect fails fast (a few tries) so a wrong URL or password is reported;
            # once connected the limits are lifted below: reconnects never give up.
            max_reconnect_attempts=2,
            # nats-py annotates these two as int; it uses them as seconds, fractions work.
            reconnect_time_wait=options.reconnect_min,  # type: ignore[arg-type]
            reconnect_to_server_handler=backoff_handler(options),
            connect_timeout=options.connect_timeout,  # type: ignore[arg-type]
            ping_interval=options.ping_interval,
            max_outstanding_pings=options.max_pings,
            pending_size=options.pending_size,
        )
        clients.append(client)
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        last = errors[-1] if errors else scrub(str(exc) or type(exc).__name__, url)
        raise ConnectionLostError(f"connecting on NATS at {url} failed: {last}") from exc
    # nats-py reads these on every reconnect; the backoff hook decides the delays from now on.
    client.options["max_reconnect_attempts"] = -1
    client.options["reconnect_time_wait"] = 0
    return client


_BARRIER_TIMEOUT = 5  # seconds per round trip (nats-py wants an int)


async def subscribed(client: Client) -> None:
    """Return once the server has processed every SUB this client sent so far.

    One ``flush()`` is not enough: nats-py writes flush()'s PING straight to the socket, while
    ``subscribe()`` only queued its SUB for the flusher task, so the PING (and its PONG) can
    overtake the SUB and a message published right after from another connection finds no
    subscriber (core NATS drops it: the "got 199 of 200" conformance flake). While the first
    round trip is under way the flusher task has written the SUB; the second PING follows it
    on the wire, so its PONG proves the server has the subscription.
    """
    await client.flush(timeout=_BARRIER_TIMEOUT)
    await client.flush(timeout=_BARRIER_TIMEOUT)
