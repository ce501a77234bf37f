"""Setup layer: turn a scaffold run into the summary: files, generated features, next steps."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from eventwire.brokers.catalog import profile_named
from eventwire.core.capabilities import Capabilities, Support
from eventwire.core.errors import ConfigurationError
from eventwire.setup.choices import Pattern
from eventwire.setup.summary import CreatedFile, SetupSummary
from eventwire.setup.writer import FileOutcome

if TYPE_CHECKING:
    from eventwire.setup.scaffold import ServicePlan


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
    features = []
    if caps is not None and caps.reconnects:
        features.append(f"Automatic reconnection with exponential backoff ({b.client} adapter)")
    retries = "Retries: 5 attempts, backoff 0.5 s doubling to 30 s with jitter"
    if caps is not None and caps.delayed_redelivery:
        retries += f" (delayed redelivery {_how(caps.delayed_redelivery)})"
    dead = f"Dead letters kept in a {b.dlq} after the last attempt"
    if caps is not None and caps.dead_letter:
        dead += f" ({_how(caps.dead_letter)})"
    features += [
        retries,
        dead + "; inspect with make dlq",
        "Typed messages (pydantic); invalid bodies are dead-lettered, never retried",
        "Idempotent handling: redelivered duplicates are acknowledged without reprocessing",
        "Acknowledgement after the handler succeeds (at-least-once)",
    ]
    if plan.pattern is Pattern.WORK_QUEUE:
        features.append("Competing workers with concurrency 8 per process (EVENTWIRE_CONCURRENCY)")
    elif plan.pattern is Pattern.PUB_SUB:
        features.append("Two subscriber groups (notify, audit), each receiving every event")
    else:
        features.append("Per-key ordering by entity_id with concurrency across keys")
        features.append("Projection that detects sequence gaps and ignores replays")
    features += [
        "Graceful shutdown on SIGTERM: in-flight messages finish, the rest return to the broker",
        f"Settings from the environment and .env ({topic}.settings, .env.example)",
        "Tests on the in-memory broker, no Docker needed",
    ]
    compose = f"docker-compose.yml: {b.display.split()[0]} with healthchecks"
    if b.key.value == "kafka":
        compose += " (KRaft, no ZooKeeper) and a schema registry"
    if plan.monitoring:
        compose += "; Prometheus, Grafana and the broker exporter (profile monitoring)"
    features.append(compose)
    return features


def _next_steps(plan: ServicePlan) -> list[str]:
    b = plan.broker
    where = os.path.relpath(plan.target) if plan.target.is_relative_to(Path.cwd()) else plan.target
    steps = [f"cd {where} && python -m pip install -e '.[dev]'"]
    steps.append("Run the tests (in-memory broker): make test")
    steps.append("Try it with no Docker on the embedded SQLite broker: make demo")
    server = b.display.split()[0]
    if b.key.value == "kafka":
        steps.append(f"Start {server} and the schema registry: docker compose up -d")
    else:
        steps.append(f"Start {server}: docker compose up -d")
    steps.append("Copy the settings and adjust the broker URL: cp .env.example .env")
    if b.adapter_ready:
        steps.append(
            "Start a worker: make worker  (publish samples from another shell: make publish)"
        )
    else:
        steps.append(
            "Until eventwire's Kafka adapter ships, run on SQLite: "
            "EVENTWIRE_BROKER_URL=sqlite:///.eventwire/broker.db make worker"
        )
    steps.append(f"Put your business logic in {plan.package}/messaging/handlers.py")
    if plan.monitoring:
        steps.append("Optional dashboards: docker compose --profile monitoring up -d")
    return steps


def build_summary(plan: ServicePlan, outcomes: list[FileOutcome], *, updated: bool) -> SetupSummary:
    """The summary for ``plan`` after the writer produced ``outcomes``."""
    notes = []
    if not plan.broker.adapter_ready:
        notes.append(
            f"eventwire's {plan.broker.display} adapter is not built yet: the service's tests "
            "run on memory:// and the README says how to run it on SQLite meanwhile"
        )
    changed = [o.path for o in outcomes if o.status == "kept (user-changed)"]
    if changed:
        notes.append("kept your changes (not overwritten): " + ", ".join(changed))
    return SetupSummary(
        broker=plan.broker.display,
        pattern=plan.broker.titles[plan.pattern],
        client=f"Python + eventwire ({plan.broker.client})",
        files=tuple(CreatedFile(path=o.path, lines=o.lines, status=o.status) for o in outcomes),
        features=tuple(_features(plan)),
        next_steps=tuple(_next_steps(plan)),
        notes=tuple(notes),
        updated=updated,
    )
