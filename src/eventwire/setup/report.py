"""Setup layer: turn a scaffold run into the summary: files, generated features, next steps."""

from __future__ import annotations

import os
from pathlib import Path

from eventwire.brokers.catalog import profile_named
from eventwire.core.capabilities import Capabilities, Support
from eventwire.core.errors import ConfigurationError
from eventwire.setup import formats
from eventwire.setup.choices import Pattern
from eventwire.setup.defaults import SERVICE_DEFAULTS
from eventwire.setup.plan import ServicePlan
from eventwire.setup.summary import CreatedFile, SetupSummary
from eventwire.setup.traits import PARTITIONS, traits_of
from eventwire.setup.writer import FileOutcome


def _capabilities(plan: ServicePlan) -> Capabilities | None:
    """The catalog's proven claims for the broker, ``None`` while it has no adapter."""
    try:
        return profile_named(plan.broker.profile).capabilities
    except ConfigurationError:
        return None


def _how(support: Support) -> str:
    return "native" if support is Support.NATIVE else "emulated by the adapter"


def _features(plan: ServicePlan) -> list[str]:
    b, topic = plan.broker, f"{plan.package}.messaging"
    caps = _capabilities(plan)
    traits = traits_of(b)
    store = "Redis" if b.key.value == "redis" else "PostgreSQL"
    features = []
    if caps is not None and caps.reconnects:
        features.append(
            f"Automatic reconnection with exponential backoff ({traits.client} adapter)"
        )
    d = SERVICE_DEFAULTS
    retries = (
        f"Retries: {d.max_attempts} attempts, backoff {d.initial_delay:g} s doubling to "
        f"{d.max_delay:g} s with jitter"
    )
    if caps is not None and caps.delayed_redelivery:
        retries += f" (delayed redelivery {_how(caps.delayed_redelivery)})"
    dead = f"Dead letters kept in a {b.dlq} after the last attempt"
    if caps is not None and caps.dead_letter:
        dead += f" ({_how(caps.dead_letter)})"
    features += [
        retries,
        dead + "; inspect with make dlq",
        _message_feature(plan),
        (
            "Idempotent handling shared by every worker: a redelivery to any worker or after "
            f"a restart is acknowledged without reprocessing ({store} store, "
            "EVENTWIRE_IDEMPOTENCY_URL)"
        ),
        "Acknowledgement after the handler succeeds"
        + (" (at-most-once broker)" if traits.at_most_once else " (at-least-once)"),
    ]
    if plan.pattern is Pattern.WORK_QUEUE:
        features.append(
            f"Competing workers with concurrency {d.concurrency} per process "
            "(EVENTWIRE_CONCURRENCY)"
        )
    elif plan.pattern is Pattern.PUB_SUB and traits.consumer_groups:
        features.append("Two subscriber groups (notify, audit), each receiving every event")
    elif plan.pattern is Pattern.PUB_SUB:
        features.append("Two subscribers (notify, audit); no groups: every worker gets every event")
    elif traits.ordered_across_members:
        features.append("Per-entity order across workers: events keyed by entity_id")
        features.append("Projection that retries sequence gaps and ignores replays")
    else:
        features.append(
            f"Per-entity order across workers: {PARTITIONS} partition topics, each read by one "
            "worker (EVENTWIRE_WORKER_INDEX of EVENTWIRE_WORKERS)"
        )
        features.append("Projection that retries sequence gaps and ignores replays")
    features += [
        "Graceful shutdown on SIGTERM: in-flight messages finish, the rest return to the broker",
        f"Typed settings (pydantic-settings) from the environment and .env ({topic}.settings)",
        (
            "Tests on the in-memory broker, no Docker needed, and against the real broker "
            "(make test-integration)"
        ),
        (
            "Commands end with one line and a non-zero status on errors; the worker logs "
            "with timestamps and levels"
        ),
    ]
    compose = f"Dockerfile; docker-compose.yml: {b.server}, the worker with a /readyz check"
    if b.key.value == "kafka":
        compose += " (KRaft, no ZooKeeper)"
    if formats.format_named(plan.message_format).uses_registry:
        compose += ", the schema registry the worker uses"
    if plan.monitoring:
        compose += (
            "; Prometheus with alert rules, Grafana with a dashboard and the broker exporter "
            "(profile monitoring)"
        )
    features.append(compose)
    return features


def _message_feature(plan: ServicePlan) -> str:
    fmt = formats.format_named(plan.message_format)
    if not fmt.uses_registry:
        return "Typed messages (pydantic); invalid bodies are dead-lettered, never retried"
    typed = "Protobuf classes" if fmt.name == "protobuf" else "pydantic models"
    return (
        f"{fmt.display} messages ({typed}) in the Confluent wire format, the schema in "
        "a schema registry (EVENTWIRE_SCHEMA_REGISTRY_URL; a local file by default): "
        "undecodable bodies and unknown schema ids are dead-lettered, a registry outage waited out"
    )


def _next_steps(plan: ServicePlan) -> list[str]:
    b = plan.broker
    where = os.path.relpath(plan.target) if plan.target.is_relative_to(Path.cwd()) else plan.target
    steps = [f"cd {where} && python -m venv .venv && . .venv/bin/activate"]
    steps.append("Install (eventwire comes from wheels/): python -m pip install -e '.[dev]'")
    steps.append("Run the tests (in-memory broker): make test")
    steps.append("Try it with no Docker on the embedded SQLite broker: make demo")
    fmt = formats.format_named(plan.message_format)
    if fmt.name == "protobuf":
        steps.append("Build the Protobuf module from the .proto file: make proto")
    server = b.server + (" and the schema registry" if fmt.uses_registry else "")
    if b.key.value != "redis" or fmt.uses_registry:
        server += " and PostgreSQL"
    steps.append(f"Start {server}: make up  (then make test-integration)")
    steps.append("Copy the settings and adjust the broker URL: cp .env.example .env")
    steps.append("Start a worker: make worker  (publish samples from another shell: make publish)")
    steps.append(f"Put your business logic in {plan.package}/messaging/handlers.py")
    if plan.monitoring:
        steps.append("Optional dashboards and alerts: make monitoring")
    return steps


def build_summary(plan: ServicePlan, outcomes: list[FileOutcome], *, updated: bool) -> SetupSummary:
    """The summary for ``plan`` after the writer produced ``outcomes``."""
    notes = []
    changed = [o.path for o in outcomes if o.status == "kept (user-changed)"]
    if changed:
        notes.append("kept your changes (not overwritten): " + ", ".join(changed))
    return SetupSummary(
        broker=plan.broker.display,
        pattern=plan.broker.titles[plan.pattern],
        client=f"Python + eventwire ({traits_of(plan.broker).client})",
        files=tuple(CreatedFile(path=o.path, lines=o.lines, status=o.status) for o in outcomes),
        features=tuple(_features(plan)),
        next_steps=tuple(_next_steps(plan)),
        notes=tuple(notes),
        updated=updated,
    )
