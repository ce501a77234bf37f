"""CLI layer: ``eventwire monitor``, a live terminal view of a running worker's figures
(``--worker``), or of groups' backlogs read from the broker directly (``--broker``, see
``monitor_broker``).

It reads the worker's ``/metrics`` once a second (the same numbers Prometheus scrapes) and
shows, per subscriber, the processed rate and totals, failures, retries, dead letters,
in-flight handlers and, where the worker reports it, consumer lag; then the publish totals
per topic. ``--once`` prints one table and exits; ``--json`` prints one snapshot as JSON, for
scripts. Rendering uses rich (a typer dependency).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated

import typer

from eventwire.cli.errors import CLIError
from eventwire.core.errors import ConfigurationError, EventwireError

if TYPE_CHECKING:
    from rich.table import Table

    from eventwire.observability.scrape import WorkerSnapshot

WorkerOption = Annotated[
    str | None,
    typer.Option(
        "--worker",
        "-w",
        help="The worker's HTTP address (eventwire run --http-port), e.g. http://127.0.0.1:9000.",
    ),
]
BrokerOption = Annotated[
    str | None,
    typer.Option(
        "--broker",
        "-b",
        help="Read the backlog from this broker instead (needs --topic and --group).",
    ),
]
TopicOption = Annotated[str | None, typer.Option("--topic", help="With --broker: the topic.")]
GroupOption = Annotated[
    list[str] | None, typer.Option("--group", "-g", help="With --broker: a group (repeatable).")
]


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor)


def _snapshot(worker: str) -> WorkerSnapshot:
    from eventwire.observability.scrape import fetch_snapshot

    try:
        return fetch_snapshot(worker)
    except ConfigurationError as exc:
        raise CLIError(str(exc)) from exc  # a wrong --worker: usage error, exit 2
    except EventwireError as exc:
        raise CLIError(str(exc), exit_code=1) from exc  # the worker is down or not eventwire


def _number(value: float) -> str:
    return f"{value:,.0f}"


def render(previous: WorkerSnapshot | None, current: WorkerSnapshot, worker: str) -> Table:
    """The subscribers table (and publish totals) for ``current``; rates need ``previous``."""
    from rich.table import Table

    from eventwire.observability.scrape import rates

    per_second = rates(previous, current) if previous is not None else {}
    table = Table(title=f"eventwire monitor: {worker}", title_justify="left")
    for column in ("topic", "group", "handler"):
        table.add_column(column)
    for column in ("msg/s", "processed", "failed", "retried", "dead", "in flight", "lag"):
        table.add_column(column, justify="right")
    for (topic, group, handler), figures in sorted(current.subscribers.items()):
        rate = per_second.get((topic, group, handler))
        table.add_row(
            topic,
            group or "(broadcast)",
            handler,
            "-" if rate is None else f"{rate:,.1f}",
            _number(figures.processed),
            _number(figures.failed),
            _number(figures.retried),
            _number(figures.dead_lettered),
            _number(figures.in_flight),
            "-" if figures.lag is None else _number(figures.lag),
        )
    for topic, count in sorted(current.published.items()):
        table.add_row(topic, "(published)", "", "", _number(count), "", "", "", "", "")
    if not current.subscribers and not current.published:
        table.caption = "no eventwire figures yet (is anything subscribed?)"
    return table


def _as_json(snapshot: WorkerSnapshot) -> str:
    return json.dumps(
        {
            "subscribers": [
                {
                    "topic": topic,
                    "group": group or None,
                    "handler": handler,
                    "processed": f.processed,
                    "failed": f.failed,
                    "retried": f.retried,
                    "dead_lettered": f.dead_lettered,
                    "duplicates_suppressed": f.duplicates,
                    "in_flight": f.in_flight,
                    "lag": f.lag,
                }
                for (topic, group, handler), f in sorted(snapshot.subscribers.items())
            ],
            "published": dict(sorted(snapshot.published.items())),
        },
        indent=2,
    )


def monitor(
    *,
    worker: WorkerOption = None,
    broker: BrokerOption = None,
    topic: TopicOption = None,
    group: GroupOption = None,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between refreshes.")] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="Print one table and exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one snapshot as JSON.")] = False,
) -> None:
    """Watch a running worker (rates, totals, failures, retries, dead letters, lag), or with
    --broker the backlog of groups on a topic read from the broker itself."""
    if (worker is None) == (broker is None):
        raise CLIError("give one of --worker URL (a running worker) or --broker URL")
    if broker is not None:
        if topic is None or not group:
            raise CLIError("--broker needs --topic TOPIC and at least one --group GROUP")
        _monitor_broker(broker, topic, group, interval=interval, once=once, as_json=as_json)
        return
    assert worker is not None
    _monitor_worker(worker, interval=interval, once=once, as_json=as_json)


def _monitor_worker(worker: str, *, interval: float, once: bool, as_json: bool) -> None:
    from rich.console import Console
    from rich.live import Live

    first = _snapshot(worker)
    if as_json:
        typer.echo(_as_json(first))
        return
    console = Console()
    if once:
        console.print(render(None, first, worker))
        return
    previous = first
    try:
        with Live(render(None, first, worker), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                current = _snapshot(worker)
                live.update(render(previous, current, worker), refresh=True)
                previous = current
    except KeyboardInterrupt:
        return


def _monitor_broker(
    url: str, topic: str, groups: list[str], *, interval: float, once: bool, as_json: bool
) -> None:
    import asyncio

    from rich.console import Console
    from rich.live import Live

    from eventwire.cli import monitor_broker as mb
    from eventwire.cli.resolve import broker_url

    resolved = broker_url(url)
    reader = mb.open_reader(resolved.url)
    where = str(resolved.url)

    async def watch() -> None:
        try:
            first = await mb.read_snapshot(reader, topic, groups)
            if as_json:
                typer.echo(json.dumps(mb.as_dict(first), indent=2))
                return
            console = Console()
            if once:
                console.print(mb.render(None, first, where))
                return
            previous = first
            with Live(mb.render(None, first, where), console=console, auto_refresh=False) as live:
                while True:
                    await asyncio.sleep(interval)
                    current = await mb.read_snapshot(reader, topic, groups)
                    live.update(mb.render(previous, current, where), refresh=True)
                    previous = current
        finally:
            await reader.aclose()

    try:
        asyncio.run(watch())
    except KeyboardInterrupt:
        return
