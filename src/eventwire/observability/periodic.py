"""Observability layer: ``Periodic``, a background task doing one round every few seconds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


class Periodic:
    """Runs ``round()`` at once and then every ``every`` seconds, from ``start()`` until
    ``aclose()``; a round must catch its own failures (one that raises ends the task)."""

    def __init__(self, round_: Callable[[], Awaitable[object]], every: float, name: str) -> None:
        self._round = round_
        self._every = every
        self._name = name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def _run(self) -> None:
        while True:
            await self._round()
            await asyncio.sleep(self._every)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
