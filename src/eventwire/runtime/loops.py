"""Runtime layer: which event loop a worker runs on (the default asyncio one, or uvloop)."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Any, Final, Literal, TypeAlias, TypeVar

from eventwire.core.errors import ConfigurationError

LoopName: TypeAlias = Literal["asyncio", "uvloop"]
LOOPS: Final[tuple[LoopName, ...]] = ("asyncio", "uvloop")
UVLOOP_EXTRA_HINT: Final = "pip install 'eventwire[uvloop]'"

_T = TypeVar("_T")


def loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of event loop ``loop`` (None: asyncio's default); ``ConfigurationError``
    for an unknown name or when uvloop is asked for and not installed."""
    if loop == "asyncio":
        return None
    if loop != "uvloop":
        raise ConfigurationError(f"unknown event loop {loop!r}: use one of {', '.join(LOOPS)}")
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError as exc:
        raise ConfigurationError(
            f"event loop 'uvloop' is not installed ({UVLOOP_EXTRA_HINT})"
        ) from exc
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_with_loop(main: Coroutine[Any, Any, _T], *, loop: str = "asyncio") -> _T:
    """``asyncio.run(main)`` on the event loop named ``loop`` ("asyncio" or "uvloop")."""
    try:
        factory = loop_factory(loop)
    except ConfigurationError:
        main.close()  # never awaited: close it so Python does not warn about it
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
