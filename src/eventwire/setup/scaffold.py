"""Setup layer: `eventwire init`: plan a service, render its templates, write them atomically."""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from eventwire.core.errors import ConfigurationError
from eventwire.setup import advisor, choices, facts, summary, writer
from eventwire.setup.choices import BrokerChoice, Pattern
from eventwire.setup.manifest import Manifest, Owner
from eventwire.setup.report import build_summary
from eventwire.setup.requirements import Requirements
from eventwire.setup.requirements import load as load_requirements
from eventwire.setup.summary import SetupSummary

GENERATOR_VERSION = "1"
_TEMPLATES = Path(__file__).with_name("templates")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServicePlan:
    """Everything needed to render a service; built and validated before anything is written."""

    name: str
    package: str
    target: Path
    broker: BrokerChoice
    pattern: Pattern
    message_format: str
    monitoring: bool
    advice_text: str = ""


_MAX_NAME = 40  # keeps every generated line within the 100-column lint limit


def _package_name(name: str) -> str:
    if len(name) > _MAX_NAME:
        raise ConfigurationError(f"service name is {len(name)} characters long: use at most 40")
    package = re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()
    if not package or package[0].isdigit() or keyword.iskeyword(package):
        raise ConfigurationError(
            f"service name {name!r} does not make a Python package name: start with a letter"
        )
    return package


def plan_service(
    *,
    name: str,
    broker: str | None,
    pattern: str | None,
    requirements_file: Path | None = None,
    requirements: Requirements | None = None,
    directory: Path | None = None,
    message_format: str | None = None,
    monitoring: bool | None = None,
) -> ServicePlan:
    """Validate the options into a plan; requirements (a file or a model) run the advisor.

    Options left as ``None`` come from the folder's manifest when there is one (an update).
    """
    package = _package_name(name)
    target = (directory if directory is not None else Path(name)).expanduser().absolute()
    existing = Manifest.read(target) if target.is_dir() else None
    if existing is not None and existing.package != package:
        raise ConfigurationError(
            f"{target} holds the service {existing.name!r}: use that name, or another --dir"
        )
    message_format = message_format or (existing.message_format if existing else "json")
    if message_format not in choices.FORMATS:
        raise ConfigurationError(
            f"format {message_format!r} is not available yet: use "
            + ", ".join(choices.FORMATS)
            + " (avro and protobuf arrive with the Kafka adapter)"
        )
    if monitoring is None:
        monitoring = existing.monitoring if existing else True
    if requirements_file is not None:
        requirements = load_requirements(requirements_file)
    advice_text = ""
    if requirements is not None:
        advice = advisor.advise(requirements, facts.current())
        advice_text = summary.render_advice(requirements, advice)
        if broker is None:
            if advice.winner is None:
                raise ConfigurationError(f"{advice.why_none}; pass --broker to choose anyway")
            broker = advice.winner.name
        pattern = pattern or choices.pattern_for(requirements.use_case).value
    if existing is not None:
        broker = broker or existing.broker
        pattern = pattern or existing.pattern
    if broker is None or pattern is None:
        raise ConfigurationError(
            "say what to generate: --broker and --pattern, or --from requirements.yaml"
        )
    return ServicePlan(
        name=name,
        package=package,
        target=target,
        broker=choices.broker_named(broker),
        pattern=choices.pattern_named(pattern),
        message_format=message_format,
        monitoring=monitoring,
        advice_text=advice_text,
    )


# template -> (output path, with {package} filled in; who owns the file afterwards)
_FILES: tuple[tuple[str, str, Owner], ...] = (
    ("consumer.py.j2", "{package}/messaging/consumer.py", Owner.GENERATOR),
    ("publisher.py.j2", "{package}/messaging/publisher.py", Owner.GENERATOR),
    ("handlers.py.j2", "{package}/messaging/handlers.py", Owner.USER),
    ("messages.py.j2", "{package}/messaging/messages.py", Owner.GENERATOR),
    ("settings.py.j2", "{package}/messaging/settings.py", Owner.GENERATOR),
    ("dead_letters.py.j2", "{package}/messaging/dead_letters.py", Owner.GENERATOR),
    ("messaging_init.py.j2", "{package}/messaging/__init__.py", Owner.GENERATOR),
    ("package_init.py.j2", "{package}/__init__.py", Owner.GENERATOR),
    ("test_service.py.j2", "tests/test_{package}.py", Owner.GENERATOR),
    ("env.example.j2", ".env.example", Owner.GENERATOR),
    ("docker-compose.yml.j2", "docker-compose.yml", Owner.GENERATOR),
    ("Makefile.j2", "Makefile", Owner.GENERATOR),
    ("README.md.j2", "README.md", Owner.GENERATOR),
    ("pyproject.toml.j2", "pyproject.toml", Owner.USER),
    ("gitignore.j2", ".gitignore", Owner.USER),
)
_MONITORING_FILES: tuple[tuple[str, str, Owner], ...] = (
    ("prometheus.yml.j2", "monitoring/prometheus.yml", Owner.GENERATOR),
    ("grafana_datasources.yml.j2", "monitoring/grafana/datasources.yml", Owner.GENERATOR),
)

_RABBITMQ_PLUGINS = (
    "rabbitmq_enabled_plugins.j2",
    "monitoring/rabbitmq_enabled_plugins",
    Owner.GENERATOR,
)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        undefined=jinja2.StrictUndefined,  # a typo in a template fails generation, not the user
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 (renders Python, YAML and Markdown, never HTML)
    )


def template_context(plan: ServicePlan) -> dict[str, object]:
    """The variables every template sees."""
    base = re.sub(r"[_-]?service$", "", plan.package) or plan.package
    return {
        "name": plan.name,
        "package": plan.package,
        "base": base,
        "title": " ".join(part.capitalize() for part in re.split(r"[_\W]+", plan.name) if part),
        "broker": plan.broker,
        "broker_key": plan.broker.key.value,
        "pattern": plan.pattern.value,
        "pattern_title": plan.broker.titles[plan.pattern],
        "message_format": plan.message_format,
        "monitoring": plan.monitoring,
        "topic": f"{base}.{_TOPIC_SUFFIX[plan.pattern]}",
        "generator_version": GENERATOR_VERSION,
    }


_TOPIC_SUFFIX = {
    Pattern.WORK_QUEUE: "tasks",
    Pattern.PUB_SUB: "events",
    Pattern.EVENT_STREAMING: "stream",
}


def render(plan: ServicePlan) -> dict[str, tuple[bytes, Owner]]:
    """Every file of the service: relative path -> (content, owner)."""
    env = _environment()
    context = template_context(plan)
    specs = _FILES + (_MONITORING_FILES if plan.monitoring else ())
    if plan.monitoring and plan.broker.key.value == "rabbitmq":
        # rabbitmq_prometheus is not enabled by default in every image tag; say so explicitly.
        specs += (_RABBITMQ_PLUGINS,)
    rendered: dict[str, tuple[bytes, Owner]] = {}
    for template, out, owner in specs:
        text = env.get_template(template).render(context)
        rendered[out.format(package=plan.package)] = (text.encode("utf-8"), owner)
    return rendered


def write_service(plan: ServicePlan, *, update: bool = False) -> SetupSummary:
    """Write (or with ``update`` refresh) the service and describe what was done."""
    files = render(plan)
    manifest = Manifest(
        name=plan.name,
        package=plan.package,
        broker=plan.broker.key.value,
        pattern=plan.pattern.value,
        message_format=plan.message_format,
        monitoring=plan.monitoring,
        generator_version=GENERATOR_VERSION,
    )
    if update:
        outcome = writer.update_tree(plan.target, files, manifest)
    else:
        outcome = writer.create_tree(plan.target, files, manifest)
    return build_summary(plan, outcome, updated=update)
