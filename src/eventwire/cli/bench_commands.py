"""CLI layer: ``eventwire bench``: eventwire's App against the broker's own client, one run.

The measuring is in ``bench_measure``; the raw drivers live in each broker's package
(``brokers/<name>/bench_raw.py``) and are loaded here by module name, so the CLI never
imports a client library. Everything the run creates on the broker (its own topic, group,
queues, streams, Kafka topics) is deleted afterwards, also after a failure.
"""

from __future__ import annotations

import asyncio
import importlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from eventwire.cli import resolve
from eventwire.cli.bench_measure import MIN_SIZE, BenchPlan, Progress, SideFigures
from eventwire.cli.errors import CLIError, scrub
from eventwire.core.errors import EventwireError

if TYPE_CHECKING:
    from types import ModuleType

    from eventwire.core.capabilities import BrokerProfile
    from eventwire.core.contract import Broker

# Profile -> the module with its raw driver and clean-up (memory:// needs neither).
_RAW_MODULES: Final = {
    "rabbitmq": "eventwire.brokers.rabbitmq.bench_raw",
    "redis-streams": "eventwire.brokers.redis.bench_raw",
    "nats-jetstream": "eventwire.brokers.nats.bench_raw",
    "kafka": "eventwire.brokers.kafka.bench_raw",
    "sqlite": "eventwire.brokers.sqlite.bench_raw",
}
_NO_RAW: Final = {
    "memory": "memory:// has no raw client: the adapter is the broker (in-process)",
    "sqlite": "sqlite:// has no raw client: the adapter is the only client of the file",
}
BROKER_HELP = f"Broker URL; default ${resolve.BROKER_URL_ENV}, else {resolve.DEFAULT_BROKER_URL}."


def bench(
    *,
    broker: Annotated[str | None, typer.Option("--broker", "-b", help=BROKER_HELP)] = None,
    messages: Annotated[
        int, typer.Option("--messages", "-n", min=2, help="Messages per throughput phase.")
    ] = 2000,
    size: Annotated[
        int, typer.Option("--size", min=MIN_SIZE, help="Bytes of each JSON body.")
    ] = 200,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Publishes in flight at once.")
    ] = 100,
    latency_messages: Annotated[
        int,
        typer.Option("--latency-messages", min=1, help="Messages of the end-to-end latency phase."),
    ] = 500,
    rate: Annotated[
        float, typer.Option("--rate", min=1.0, help="Messages per second in the latency phase.")
    ] = 1000.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON document, no progress.")
    ] = False,
) -> None:
    """Publish-confirmed and consume-with-ack throughput and p50/p99/p99.9 latency through
    the App, and the same through the broker's own client library, with the ratio."""
    resolved = resolve.broker_url(broker)
    from eventwire.brokers.catalog import profile_for

    _check_benchable(profile_for(resolved.url))  # before any connection
    plan = BenchPlan(
        messages=messages,
        size=size,
        concurrency=concurrency,
        latency_messages=latency_messages,
        rate=rate,
    )
    from eventwire.cli.inspect_commands import quiet_client_logs

    with quiet_client_logs(), _progress(enabled=not as_json) as progress:
        report = asyncio.run(measure(resolved, plan, progress))
    if as_json:
        import orjson

        typer.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print_report(report)


def _check_benchable(profile: BrokerProfile) -> None:
    from eventwire.core.capabilities import Guarantee

    caps = profile.capabilities
    if caps.guarantee is Guarantee.AT_MOST_ONCE or not caps.persistent:
        raise CLIError(
            f"{profile.name} is at-most-once with no backlog: bench measures confirmed "
            "publishes and acknowledged consumption; use an at-least-once profile "
            "(redis://, nats://, amqp://, kafka://, sqlite://, memory://)"
        )


def _raw_module(profile: BrokerProfile) -> ModuleType | None:
    name = _RAW_MODULES.get(profile.name)
    return importlib.import_module(name) if name else None


async def measure(
    resolved: resolve.ResolvedBroker, plan: BenchPlan, progress: _Bars | None = None
) -> dict[str, Any]:
    """One bench run on ``resolved`` (App, then raw client), cleaned up afterwards: the
    report ``--json`` prints. ``benchmarks/bench_app.py`` calls it too."""
    from eventwire.brokers.catalog import profile_for

    profile = profile_for(resolved.url)
    _check_benchable(profile)
    progress = progress or _Bars(None)
    from eventwire.cli.bench_measure import measure_app, measure_raw
    from eventwire.cli.broker_wait import wait_until_reachable

    await wait_until_reachable(resolved, 0, advice="start it or check the URL")
    run = uuid.uuid4().hex[:10]
    topic, group = f"ewbench.{run}", f"ewbench-{run}"
    module = _raw_module(profile)
    used: list[Broker] = []
    try:
        app_figures = await measure_app(
            resolved.url.secret(),
            topic,
            group,
            plan,
            progress=progress.bar("eventwire App", plan),
            used=used,
        )
        raw_figures: SideFigures | None = None
        client: str | None = getattr(module, "CLIENT", None)
        if module is not None and client is not None:
            driver = module.RawDriver(resolved.url, topic)
            raw_figures = await measure_raw(driver, plan, progress.bar(f"raw {client}", plan))
    except OSError as exc:
        raise CLIError(
            f"cannot reach the broker at {resolved.url} ({exc.strerror or exc}): "
            "check the URL and that the broker is running"
        ) from None
    except TimeoutError as exc:
        raise CLIError(f"bench on {resolved.url} stalled: {exc}", exit_code=1) from None
    except EventwireError:
        raise  # written for users already: the root command prints it in one line
    except Exception as exc:  # noqa: BLE001 - a client library's own error: one line, not a traceback
        raise CLIError(
            f"bench on {resolved.url} failed: {type(exc).__name__}: {exc}", exit_code=1
        ) from None
    finally:
        if module is not None:
            await _remove(module, resolved, topic, group, used)
    return _report(
        topic=topic,
        group=group,
        resolved=resolved,
        profile=profile,
        plan=plan,
        app=app_figures,
        raw=raw_figures,
        client=client,
    )


async def _remove(
    module: ModuleType,
    resolved: resolve.ResolvedBroker,
    topic: str,
    group: str,
    used: list[Broker],
) -> None:
    try:
        await module.remove_run(resolved.url, topic, group, used)
    except Exception as exc:  # noqa: BLE001 - said in one line; the figures still count
        typer.echo(
            scrub(
                f"eventwire: warning: could not delete the bench topic {topic} and group "
                f"{group} on {resolved.url}: {type(exc).__name__}: {exc}"
            ),
            err=True,
        )


def _report(
    *,
    topic: str,
    group: str,
    resolved: resolve.ResolvedBroker,
    profile: BrokerProfile,
    plan: BenchPlan,
    app: SideFigures,
    raw: SideFigures | None,
    client: str | None,
) -> dict[str, Any]:
    ratio = None
    if raw is not None:
        ratio = {
            "publish": app.publish_per_s / raw.publish_per_s,
            "consume": app.consume_per_s / raw.consume_per_s if raw.consume_per_s else None,
        }
    return {
        "broker": scrub(str(resolved.url)),
        "profile": profile.name,
        "topic": topic,  # the run's own, deleted afterwards with its group
        "group": group,
        "messages": plan.messages,
        "size": plan.size,
        "concurrency": plan.concurrency,
        "latency_messages": plan.latency_messages,
        "rate": plan.rate,
        "eventwire": asdict(app),
        "raw_client": client,
        "raw": asdict(raw) if raw is not None else None,
        "raw_note": None if raw is not None else _NO_RAW.get(profile.name),
        "ratio": ratio,
    }


def print_report(report: dict[str, Any]) -> None:
    """The report as a table: one row per figure, the App, the raw client, App/raw."""
    ew, raw = report["eventwire"], report["raw"]
    typer.echo(
        f"{report['profile']} at {report['broker']}: {report['messages']:,} messages of "
        f"{report['size']} bytes, {report['concurrency']} publishes in flight; latency: "
        f"{report['latency_messages']:,} messages at {report['rate']:,.0f}/s"
    )
    client = report["raw_client"] or "raw client"
    typer.echo(f"{'figure':<34} {'eventwire App':>14} {client:>24} {'App/raw':>8}")
    rows = [
        ("publish-confirmed msg/s", ("publish_per_s",), True),
        ("consume-with-ack msg/s", ("consume_per_s",), True),
        ("publish CPU µs/msg", ("publish_cpu_us",), False),
        ("consume CPU µs/msg", ("consume_cpu_us",), False),
        *(
            (f"publish latency {q} ms", ("publish_latency", key), False)
            for q, key in (("p50", "p50_ms"), ("p99", "p99_ms"), ("p99.9", "p999_ms"))
        ),
        *(
            (f"end-to-end latency {q} ms", ("end_to_end", key), False)
            for q, key in (("p50", "p50_ms"), ("p99", "p99_ms"), ("p99.9", "p999_ms"))
        ),
    ]
    for name, path, is_rate in rows:
        mine = _dig(ew, path)
        theirs = _dig(raw, path) if raw else None
        fmt = "{:,.0f}" if is_rate else "{:.2f}"
        ratio = f"{mine / theirs:.2f}x" if theirs else ""
        other = fmt.format(theirs) if theirs is not None else "-"
        typer.echo(f"{name:<34} {fmt.format(mine):>14} {other:>24} {ratio:>8}")
    if report["raw_note"]:
        typer.echo(report["raw_note"])


def _dig(figures: dict[str, Any], path: tuple[str, ...]) -> float:
    value: Any = figures
    for key in path:
        value = value[key]
    return float(value)


class _Bars:
    """A rich progress bar per side on a terminal; nothing otherwise (or with --json)."""

    def __init__(self, progress: Any | None) -> None:
        self._progress = progress

    def bar(self, label: str, plan: BenchPlan) -> Progress:
        if self._progress is None:
            return _ignore
        total = 2 * plan.messages + 1 + plan.latency_messages
        task = self._progress.add_task(label, total=total)
        progress = self._progress

        def advance(n: int) -> None:
            progress.advance(task, n)

        return advance


def _ignore(_n: int) -> None:
    return None


@contextmanager
def _progress(*, enabled: bool) -> Iterator[_Bars]:
    from rich.console import Console

    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield _Bars(None)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = (
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bars:
        yield _Bars(bars)


def register(app: typer.Typer) -> None:
    """Add ``bench`` to ``app``."""
    app.command("bench")(bench)
