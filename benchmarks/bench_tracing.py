"""Benchmark: what tracing costs the App path on memory://, off and on, in one run.

Cases, each the best of ``--rounds`` interleaved rounds (a shared machine only slows rounds):

* ``untraced publish (no hook)``: ``app.publish`` with the Publisher's tracing hook bypassed
  (its untraced function called directly): the path as it was before tracing existed;
* ``tracing off``: the same with the hook in place and ``instrument()`` never called: what
  every service that does not trace pays (one ``tracing.active()`` call per publish; a
  subscription decides once, so its per-message path is the untraced one itself);
* ``tracing on``: ``instrument()`` with an SDK ``TracerProvider`` whose span processor
  drops every span (span creation, context injection and extraction, no export cost).

Publishing is 1,000 concurrent ``app.publish()`` calls per batch; consuming is a pre-filled
topic read by an ``@app.subscriber`` with a pydantic handler. Figures are msg/s and the CPU
µs per message of this process (``time.process_time``), which moves far less with the
machine's load than wall-clock throughput does; the ratio is against the first case.

    .venv/bin/python benchmarks/bench_tracing.py [--messages 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import Callable

import _harness as bench
from bench_app import BATCH, Figure, app_consume, fill, report, timed
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from eventwire.observability import tracing
from eventwire.runtime.app import App
from eventwire.runtime.loops import run_with_loop


class DroppingExporter(SpanExporter):
    """Takes every span and keeps none: the SDK's work without an exporter's."""

    def export(self, spans: object) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def publish_concurrently(
    url: str, objs: list[object], *, bypass_hook: bool
) -> tuple[float, float]:
    async with App(url, name="bench-trace-pub") as app:
        publisher = app._publisher
        publish: Callable[..., object] = publisher._publish if bypass_hook else publisher.publish
        topic = f"p-{uuid.uuid4().hex[:6]}"

        async def work() -> None:
            for start in range(0, len(objs), BATCH):
                await asyncio.gather(
                    *(
                        publish(  # type: ignore[misc]
                            topic,
                            o,
                            key=None,
                            headers=None,
                            correlation_id=None,
                            causation_id=None,
                        )
                        for o in objs[start : start + BATCH]
                    )
                )

        return await timed(len(objs), work)


async def main(count: int, rounds: int) -> None:
    bodies = [bench.payload(i) for i in range(count)]
    objs = [json.loads(b) for b in bodies]
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(DroppingExporter()))
    pub = {n: Figure() for n in ("untraced publish (no hook)", "tracing off", "tracing on")}
    con = {n: Figure() for n in ("tracing off", "tracing on")}
    names = list(pub)
    for r in range(rounds):
        url = f"memory://bench-trace-{uuid.uuid4().hex[:6]}-{r}"
        tracing.uninstrument()
        pub[names[0]].add(*await publish_concurrently(url, objs, bypass_hook=True))
        pub[names[1]].add(*await publish_concurrently(url, objs, bypass_hook=False))
        await fill(url, "c-off", bodies)
        con["tracing off"].add(*await app_consume(url, "c-off", count, 1))
        tracing.instrument(provider)
        pub[names[2]].add(*await publish_concurrently(url, objs, bypass_hook=False))
        await fill(url, "c-on", bodies)
        con["tracing on"].add(*await app_consume(url, "c-on", count, 1))
    tracing.uninstrument()
    report(f"{BATCH} concurrent app.publish(), {count:,} messages x {rounds} rounds", pub, names[0])
    report("App consume (pydantic handler)", con, "tracing off")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    arguments = parser.parse_args()
    run_with_loop(main(arguments.messages, arguments.rounds), loop="asyncio")
