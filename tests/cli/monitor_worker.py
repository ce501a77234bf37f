"""CLI-test worker for ``eventwire monitor``: bodies containing "poison" are dead-lettered."""

from __future__ import annotations

from typing import Any

from eventwire import App, PermanentError

app = App(name="monitor-worker")


@app.subscriber("monitor.events", group="watchers", concurrency=4)
async def watch(payload: dict[str, Any]) -> None:
    if payload.get("poison"):
        raise PermanentError("poison on purpose")
