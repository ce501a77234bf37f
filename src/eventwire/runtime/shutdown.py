"""Runtime layer: turning SIGTERM / SIGINT into a graceful stop request."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from eventwire.observability.logs import get_logger

_log = get_logger("runtime")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def signals_set(stop: asyncio.Event, *, timeout: float, enabled: bool = True) -> Iterator[None]:
    """While inside, SIGTERM/SIGINT set ``stop``; a second signal is logged and ignored.

    The handlers are removed on exit so the default behaviour (KeyboardInterrupt on Ctrl-C)
    comes back once the app has stopped. Where the loop cannot install handlers (Windows,
    a non-main thread) nothing is installed and the caller's own ``stop`` still works.
    """
    if not enabled:
        yield
        return
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            _log.warning("%s received again: still shutting down", sig.name)
            return
        _log.info("%s received: stopping, waiting up to %.1f s for handlers", sig.name, timeout)
        stop.set()

    for sig in STOP_SIGNALS:
        try:
            loop.add_signal_handler(sig, on_signal, sig)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
