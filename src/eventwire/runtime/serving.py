"""Runtime layer: an app as a process: ``serve``'s event loop and the ops HTTP endpoints.

It knows an app only as a ``Servable`` (what it calls of one), so it never imports ``app``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Protocol

from eventwire.core.contract import Health
from eventwire.core.errors import EventwireError
from eventwire.observability.http import OpsServer, Probes
from eventwire.observability.logs import get_logger
from eventwire.runtime.loops import run_with_loop


class _Exposition(Protocol):
    def exposition(self, accept: str = ...) -> tuple[bytes, str]: ...


class Servable(Protocol):
    """What serving needs of an app (``App`` is one): run it, probe it, close it."""

    @property
    def name(self) -> str: ...
    @property
    def metrics(self) -> _Exposition: ...
    @property
    def ready(self) -> bool: ...
    def not_ready_reason(self) -> str: ...
    async def health(self) -> Health: ...
    async def connect(self, broker_url: str | None = None) -> None: ...
    async def run(
        self,
        stop: asyncio.Event | None = None,
        *,
        install_signal_handlers: bool = False,
        concurrency: int | None = None,
        http_port: int | None = None,
        http_host: str = ...,
    ) -> None: ...
    async def aclose(self) -> None: ...


_log = get_logger("runtime")


@contextlib.asynccontextmanager
async def ops_endpoints(
    app: Servable, port: int | None, host: str
) -> AsyncIterator[OpsServer | None]:
    """``/metrics``, ``/healthz`` and ``/readyz`` of ``app`` on ``host:port`` while the body
    runs (0: any free port; None: nothing is served, and None is yielded)."""
    if port is None:
        yield None
        return
    async with OpsServer(probes_of(app), port=port, host=host) as server:
        yield server


def probes_of(app: Servable) -> Probes:
    """What the endpoints answer from, read from ``app`` at each request."""
    return Probes(
        metrics=app.metrics.exposition,
        health=app.health,
        ready=lambda: app.ready,
        not_ready_reason=app.not_ready_reason,
    )


def serve(
    app: Servable,
    *,
    broker_url: str | None,
    concurrency: int | None,
    install_signal_handlers: bool,
    http_port: int | None,
    http_host: str,
    loop: str = "asyncio",
) -> int:
    """``App.serve``: run ``app`` in a new event loop (``loop``: "asyncio" or "uvloop")
    until it stops; 0 after a graceful shutdown, 1 if an eventwire error (broker,
    configuration, a loop that is not installed) stopped it (logged)."""

    async def main() -> None:
        try:
            await app.connect(broker_url)
            await app.run(
                install_signal_handlers=install_signal_handlers,
                concurrency=concurrency,
                http_port=http_port,
                http_host=http_host,
            )
        finally:
            await app.aclose()

    try:
        run_with_loop(main(), loop=loop)
    except EventwireError as exc:
        _log.error("%s stopped: %s", app.name, exc)
        return 1
    return 0
