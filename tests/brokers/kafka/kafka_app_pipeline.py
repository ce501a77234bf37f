"""Tests: an App-based consume-transform-produce process for the App transaction test: a
subscriber of IN in GROUP publishes ``out:<body>`` to OUT with ``ctx.publish``, with
``transactional=True`` when MODE is ``tx`` (``plain``: the same handler without). When it
handles the body STALL and the file MARKER does not exist yet, it writes MARKER after its
publish and then hangs, so that the SIGKILL the test sends on seeing MARKER lands after the
output was produced and before the input's offset is committed; runs until SIGKILL.

    python kafka_app_pipeline.py URL IN OUT GROUP MODE MARKER STALL
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from eventwire.core.message import Message
from eventwire.runtime.app import App
from eventwire.runtime.context import Context


def pipeline(
    url: str, source: str, target: str, group: str, *, mode: str, marker: Path, stall: bytes
) -> App:
    app = App(url, name="kafka-app-pipeline")

    @app.subscriber(source, group=group, transactional=mode == "tx")
    async def transform(message: Message, ctx: Context) -> None:
        await ctx.publish(target, Message(body=b"out:" + message.body, key=message.key))
        if message.body == stall and not marker.exists():
            await asyncio.sleep(0.5)  # past linger: the output is in the log (tx: uncommitted)
            marker.write_text("published")
            await asyncio.Event().wait()  # the test SIGKILLs the process here

    return app


if __name__ == "__main__":
    url, source, target, group, mode, marker, stall = sys.argv[1:8]
    app = pipeline(url, source, target, group, mode=mode, marker=Path(marker), stall=stall.encode())
    asyncio.run(app.run())
