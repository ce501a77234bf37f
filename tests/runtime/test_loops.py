"""The event loop a worker runs on: asyncio by default, uvloop on request (the extra)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from eventwire.core.errors import ConfigurationError
from eventwire.runtime.app import App
from eventwire.runtime.loops import run_with_loop

from .helpers import memory_url


async def _consume_one_on_this_loop() -> str:
    app = App(memory_url())
    seen: list[dict[str, int]] = []

    @app.subscriber("t", group="g")
    async def handle(payload: dict[str, int]) -> None:
        seen.append(payload)

    async with app:
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        await app.wait_ready()
        await app.publish("t", {"n": 1})
        async with asyncio.timeout(20):
            while not seen:
                await asyncio.sleep(0.005)
        stop.set()
        await task
    return type(asyncio.get_running_loop()).__module__


def test_an_app_runs_on_uvloop() -> None:
    pytest.importorskip("uvloop")
    assert run_with_loop(_consume_one_on_this_loop(), loop="uvloop").startswith("uvloop")
    assert run_with_loop(_consume_one_on_this_loop()).startswith("asyncio")


def test_an_unknown_or_missing_loop_is_a_one_line_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigurationError, match="unknown event loop 'tokio'"):
        run_with_loop(_consume_one_on_this_loop(), loop="tokio")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if the extra were not installed
    with pytest.raises(ConfigurationError, match=r"eventwire\[uvloop\]"):
        run_with_loop(_consume_one_on_this_loop(), loop="uvloop")


def test_serve_with_a_missing_loop_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)
    app = App(memory_url())

    @app.subscriber("t", group="g")
    async def handle(payload: dict[str, int]) -> None:
        return None

    assert app.serve(install_signal_handlers=False, loop="uvloop") == 1
