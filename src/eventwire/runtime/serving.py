"""Runtime layer: an app as a process: ``serve``'s event loop and the ops HTTP endpoints."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from eventwire.core.errors import EventwireError
from eventwire.observability.http import OpsServer, Probes
from eventwire.observability.logs import get_logger
from eventwire.runtime.loops import run_with_loop

if TYPE_CHECKING:
    from eventwire.runtime.app import App

_log = get_logger("runtime")


@contextlib.asynccontextmanager
async def ops_endpoints(app: App, port: int | None, host: str) -> AsyncIterator[OpsServer | None]:
    """``/metrics``, ``/healthz`` and ``/readyz`` of ``app`` on ``host:port`` while the body
    runs (0: any free port; None: nothing is served, and None is yielded)."""
    if port is None:
        yield None
        return
    probes = Probes(metrics=app.metrics.exposition, health=app.health, ready=lambda: app.ready)
    async with OpsServer(probes, port=port, host=host) as server:
        yield server


def serve(
    app: App,
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
