"""Leaving ``async with`` closes: the one ``__aexit__`` objects with a lifetime share (core)."""

from __future__ import annotations

from abc import abstractmethod
from types import TracebackType


class ClosesOnExit:
    """Mixin: ``async with obj:`` ends in ``await obj.aclose()``, whatever the exit.

    Each class keeps its own ``__aenter__`` (connect, start, ...); only leaving is shared,
    so that closing is written once, in ``aclose()``, and ``async with`` cannot drift from it.
    """

    __slots__ = ()

    @abstractmethod
    async def aclose(self) -> None: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
