"""CLI layer: advise and init, the commands that set a service up."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from eventwire.setup.requirements import Requirements

_FROM = typer.Option("--from", help="YAML file with the requirements (flags override it).")
_REQ_HELP = "Requirements (flags, --from FILE, or a wizard on a terminal)"


def _wizard() -> dict[str, Any]:
    """Ask for the main requirements one prompt at a time (terminal only), checking each
    answer as it is given: a wrong one is explained in one line and asked again."""
    from eventwire.setup import requirements
    from eventwire.setup.requirements import DeliveryGuarantee, Ordering, UseCase

    answers: dict[str, Any] = {}

    def ask(field: str, label: str, default: Any, kind: type = str) -> None:
        while True:
            value = typer.prompt(label, default=default, type=kind)
            if kind is str and field in ("routing", "operated"):
                value = [part.strip() for part in str(value).split(",") if part.strip()]
            try:
                requirements.build({**answers, field: value})
            except requirements.RequirementsError as exc:
                typer.echo(f"  {exc}", err=True)
                continue
            answers[field] = value
            return

    def choice(field: str, label: str, values: list[str], default: str) -> None:
        ask(field, f"{label} ({'/'.join(values)})", default)

    choice("use_case", "Use case", [u.value for u in UseCase], UseCase.WORK_QUEUE.value)
    ask("peak_rate", "Peak messages per second", 100.0, float)
    ask("message_size", "Typical message size in bytes", 1024, int)
    choice("delivery", "Delivery", [d.value for d in DeliveryGuarantee], "at-least-once")
    choice("ordering", "Ordering", [o.value for o in Ordering], Ordering.NONE.value)
    answers["replay"] = typer.confirm("Must new consumers replay history?", default=False)
    persistent = answers["delivery"] != DeliveryGuarantee.AT_MOST_ONCE.value
    answers["persistence"] = typer.confirm(
        "Must messages survive a broker restart?", default=persistent
    )
    ask("routing", "Routing needs (patterns,priorities,ttl or empty)", "")
    ask("operated", "Brokers you already run (comma-separated)", "")
    ask("team_size", "Team size", 3, int)
    return answers


def _interactive() -> bool:
    """A person at a terminal (the wizard would hang a script or CI job)."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def _requirements(from_file: Path | None, flags: dict[str, Any]) -> Requirements:
    from eventwire.setup import requirements

    given = {k: v for k, v in flags.items() if v is not None and v != []}
    if from_file is not None:
        return requirements.load(from_file, given)
    if not given and _interactive():
        given = _wizard()
    return requirements.build(given)


def advise(
    *,
    from_file: Annotated[Path | None, _FROM] = None,
    use_case: Annotated[
        str | None,
        typer.Option(help="work-queue, pub-sub, event-sourcing, streaming, request-reply"),
    ] = None,
    rate: Annotated[float | None, typer.Option(help="Peak messages per second.")] = None,
    average_rate: Annotated[
        float | None, typer.Option(help="Average messages per second (sizes retention).")
    ] = None,
    size: Annotated[int | None, typer.Option(help="Typical message size in bytes.")] = None,
    delivery: Annotated[
        str | None, typer.Option(help="at-most-once, at-least-once, exactly-once")
    ] = None,
    ordering: Annotated[str | None, typer.Option(help="none, per-key, global")] = None,
    latency_ms: Annotated[float | None, typer.Option(help="p99 latency target in ms.")] = None,
    replay: Annotated[
        bool | None, typer.Option("--replay/--no-replay", help="New consumers read history.")
    ] = None,
    retention_days: Annotated[float | None, typer.Option(help="Days of history to keep.")] = None,
    persistence: Annotated[
        bool | None, typer.Option("--persistence/--no-persistence", help="Survive broker restarts.")
    ] = None,
    routing: Annotated[
        list[str] | None, typer.Option(help="patterns, priorities, ttl (repeat or comma-separate).")
    ] = None,
    operated: Annotated[
        list[str] | None,
        typer.Option(help="Brokers already operated (rabbitmq, kafka, nats, redis)."),
    ] = None,
    team_size: Annotated[int | None, typer.Option(help="Engineers who will run it.")] = None,
    memory_gb: Annotated[
        float | None, typer.Option(help="RAM available to the broker, GiB.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the advice as JSON.")] = False,
) -> None:
    """Rank brokers for your requirements, with the reasons for every score."""
    from eventwire.setup import advisor, facts, summary

    flags = {
        "use_case": use_case,
        "peak_rate": rate,
        "average_rate": average_rate,
        "message_size": size,
        "delivery": delivery,
        "ordering": ordering,
        "latency_ms": latency_ms,
        "replay": replay,
        "retention_days": retention_days,
        "persistence": persistence,
        "routing": _split(routing),
        "operated": _split(operated),
        "team_size": team_size,
        "memory_budget_gb": memory_gb,
    }
    # A ConfigurationError reaches the root group, which prints it as one line, exit 2.
    req = _requirements(from_file, flags)
    result = advisor.advise(req, facts.current())
    if as_json:
        typer.echo(json.dumps({"requirements": req.to_data(), **result.to_data()}, indent=2))
    else:
        typer.echo(summary.render_advice(req, result))


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [part.strip() for v in values for part in v.split(",") if part.strip()]


def init(
    name: Annotated[str, typer.Argument(help="Service name, e.g. orders-service.")],
    *,
    broker: Annotated[
        str | None,
        typer.Option(help="rabbitmq, kafka, nats, nats-core, redis or redis-pubsub."),
    ] = None,
    pattern: Annotated[
        str | None, typer.Option(help="work-queue, pub-sub or event-streaming.")
    ] = None,
    from_file: Annotated[Path | None, _FROM] = None,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Target folder (default ./NAME).")
    ] = None,
    update: Annotated[
        bool, typer.Option("--update", help="Refresh generator-owned files.")
    ] = False,
    switch: Annotated[
        bool,
        typer.Option(
            "--switch", help="With --update: allow changing the broker, pattern or format."
        ),
    ] = False,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Message format: json (default), avro, protobuf or json-schema (these three "
            "with a schema registry).",
        ),
    ] = None,
    monitoring: Annotated[
        bool | None,
        typer.Option("--monitoring/--no-monitoring", help="Prometheus + Grafana in compose."),
    ] = None,
) -> None:
    """Scaffold a service for a broker and pattern, then print what was made."""
    from eventwire.setup import scaffold, summary

    asked = None
    if broker is None and pattern is None and from_file is None and not update and _interactive():
        asked = _requirements(None, {})  # nothing given at a terminal: the wizard, then advice
    plan = scaffold.plan_service(
        name=name,
        broker=broker,
        pattern=pattern,
        requirements_file=from_file,
        requirements=asked,
        directory=directory,
        message_format=fmt,
        monitoring=monitoring,
        update=update,
        switch=switch,
    )
    if plan.advice_text:
        typer.echo(plan.advice_text + "\n")
    result = scaffold.write_service(plan, update=update)
    typer.echo(summary.render_summary(result))


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command(help=f"Rank brokers for your requirements. {_REQ_HELP}.")(advise)
    app.command(help="Scaffold a messaging service (typed messages, worker, tests, compose).")(init)
