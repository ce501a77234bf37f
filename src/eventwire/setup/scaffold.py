"""Setup layer: `eventwire init`: plan a service, render its templates, write them atomically."""

from __future__ import annotations

import keyword
import re
import sys
from pathlib import Path

import jinja2

from eventwire.core.errors import ConfigurationError
from eventwire.setup import advisor, choices, facts, formats, summary, wheel, writer
from eventwire.setup.choices import BrokerChoice, Pattern
from eventwire.setup.defaults import SERVICE_DEFAULTS
from eventwire.setup.manifest import MANIFEST_NAME, Manifest, Owner
from eventwire.setup.plan import ServicePlan
from eventwire.setup.report import build_summary
from eventwire.setup.requirements import Requirements
from eventwire.setup.requirements import load as load_requirements
from eventwire.setup.summary import SetupSummary
from eventwire.setup.traits import PARTITIONS, traits_of

GENERATOR_VERSION = "2"
_TEMPLATES = Path(__file__).with_name("templates")


_MAX_NAME = 40  # keeps every generated line within the 100-column lint limit
_DISTRIBUTION_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")  # PEP 508
# Top-level modules a generated service imports: a package of that name would hide them.
_TAKEN = frozenset(
    {"eventwire", "pydantic", "pydantic_settings", "typer", "orjson", "yaml", "jinja2",
     "redis", "nats", "aio_pika", "aiormq", "confluent_kafka", "psycopg", "prometheus_client",
     "tests", "test"}
)  # fmt: skip


def package_name(name: str) -> str:
    """The Python package of a service name, or one line saying why the name cannot be used."""
    if len(name) > _MAX_NAME:
        raise ConfigurationError(f"service name is {len(name)} characters long: use at most 40")
    if not _DISTRIBUTION_NAME.match(name):
        raise ConfigurationError(
            f"service name {name!r} is not a valid project name: use letters, digits and "
            "- _ . (starting and ending with a letter or digit), like orders-service"
        )
    package = re.sub(r"[-_.]+", "_", name).lower()
    if package[0].isdigit():
        raise ConfigurationError(
            f"service name {name!r} starts with a digit, which a Python package cannot: "
            "start with a letter"
        )
    if keyword.iskeyword(package) or keyword.issoftkeyword(package):
        raise ConfigurationError(
            f"service name {name!r} makes the package {package!r}, a Python keyword: "
            "choose another name, like orders-service"
        )
    if package in _TAKEN or package in sys.stdlib_module_names:
        raise ConfigurationError(
            f"service name {name!r} makes the package {package!r}, which would shadow the "
            f"module {package!r} the service needs: choose another name, like {package}-service"
        )
    return package


def _target(name: str, directory: Path | None, *, update: bool) -> Path:
    """Where the service goes: --dir, else ./NAME; an update run inside the project finds it."""
    if directory is not None:
        return directory.expanduser().absolute()
    default = Path(name).absolute()
    if update and not (default / MANIFEST_NAME).is_file():
        here = Manifest.read(Path.cwd())
        if here is not None and here.name == name:
            return Path.cwd()
    return default


def _refuse_unsupported(choice: BrokerChoice, pattern: Pattern) -> None:
    traits = traits_of(choice)
    if pattern is Pattern.WORK_QUEUE and not traits.consumer_groups:
        raise ConfigurationError(
            f"{choice.display} has no consumer groups, so workers cannot share a work queue "
            "(each would get every task): use redis (Streams) or nats-core, or --pattern pub-sub"
        )


def plan_service(  # noqa: PLR0912 (one decision per option, in order; splitting hides it)
    *,
    name: str,
    broker: str | None,
    pattern: str | None,
    requirements_file: Path | None = None,
    requirements: Requirements | None = None,
    directory: Path | None = None,
    message_format: str | None = None,
    monitoring: bool | None = None,
    update: bool = False,
    switch: bool = False,
) -> ServicePlan:
    """Validate the options into a plan; requirements (a file or a model) run the advisor.

    Options left as ``None`` come from the folder's manifest when there is one (an update).
    An update keeps the broker and the pattern unless ``switch`` allows changing them.
    """
    package = package_name(name)
    target = _target(name, directory, update=update)
    existing = Manifest.read(target) if target.is_dir() else None
    if existing is not None and existing.package != package:
        raise ConfigurationError(
            f"{target} holds the service {existing.name!r}: use that name, or another --dir"
        )
    old_format = existing.message_format if existing else formats.DEFAULT_FORMAT
    message_format = formats.format_named(
        old_format if message_format is None else message_format
    ).name
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
            broker = advice.winner.name  # the profile advise chose, not just its server
        pattern = pattern or choices.pattern_for(requirements.use_case).value
    switching = False
    if existing is not None and update:
        old_broker, old_pattern = choices.broker_named(existing.broker), existing.pattern
        wanted_broker = choices.broker_named(broker) if broker else old_broker
        wanted_pattern = choices.pattern_named(pattern).value if pattern else old_pattern
        changes = []
        if wanted_broker.profile != old_broker.profile:
            changes.append(f"the broker from {old_broker.profile} to {wanted_broker.profile}")
        if wanted_pattern != old_pattern:
            changes.append(f"the pattern from {old_pattern} to {wanted_pattern}")
        if message_format != old_format:  # the handlers' message types may change with it
            changes.append(f"the format from {old_format} to {message_format}")
        if changes and not switch:
            raise ConfigurationError(
                f"--update keeps what {existing.name} was made with; it would change "
                + " and ".join(changes)
                + ": add --switch to change it (every file that depends on it is rewritten)"
            )
        switching = bool(changes)
        broker, pattern = wanted_broker.profile, wanted_pattern
    elif existing is not None:
        broker = broker or existing.broker
        pattern = pattern or existing.pattern
    if broker is None or pattern is None:
        raise ConfigurationError(
            "say what to generate: --broker and --pattern, or --from requirements.yaml"
        )
    choice, shape = choices.broker_named(broker), choices.pattern_named(pattern)
    _refuse_unsupported(choice, shape)
    return ServicePlan(
        name=name,
        package=package,
        target=target,
        broker=choice,
        pattern=shape,
        message_format=message_format,
        monitoring=monitoring,
        advice_text=advice_text,
        switching=switching,
    )


# template -> (output path, with {package} filled in; who owns the file afterwards)
_FILES: tuple[tuple[str, str, Owner], ...] = (
    ("consumer.py.j2", "{package}/messaging/consumer.py", Owner.GENERATOR),
    ("publisher.py.j2", "{package}/messaging/publisher.py", Owner.GENERATOR),
    ("handlers.py.j2", "{package}/messaging/handlers.py", Owner.USER),
    ("messages.py.j2", "{package}/messaging/messages.py", Owner.GENERATOR),
    ("settings.py.j2", "{package}/messaging/settings.py", Owner.GENERATOR),
    ("dead_letters.py.j2", "{package}/messaging/dead_letters.py", Owner.GENERATOR),
    ("tool.py.j2", "{package}/messaging/tool.py", Owner.GENERATOR),
    ("demo.py.j2", "{package}/messaging/demo.py", Owner.GENERATOR),
    ("messaging_init.py.j2", "{package}/messaging/__init__.py", Owner.GENERATOR),
    ("package_init.py.j2", "{package}/__init__.py", Owner.GENERATOR),
    ("test_service.py.j2", "tests/test_{package}.py", Owner.GENERATOR),
    ("test_integration.py.j2", "tests/test_{package}_integration.py", Owner.GENERATOR),
    ("env.example.j2", ".env.example", Owner.GENERATOR),
    ("docker-compose.yml.j2", "docker-compose.yml", Owner.GENERATOR),
    ("Dockerfile.j2", "Dockerfile", Owner.GENERATOR),
    ("dockerignore.j2", ".dockerignore", Owner.GENERATOR),
    ("Makefile.j2", "Makefile", Owner.GENERATOR),
    ("README.md.j2", "README.md", Owner.GENERATOR),
    ("pyproject.toml.j2", "pyproject.toml", Owner.USER),
    ("gitignore.j2", ".gitignore", Owner.USER),
)
_MONITORING_FILES: tuple[tuple[str, str, Owner], ...] = (
    ("prometheus.yml.j2", "monitoring/prometheus.yml", Owner.GENERATOR),
    ("alerts.yml.j2", "monitoring/alerts.yml", Owner.GENERATOR),
    (
        "grafana_datasources.yml.j2",
        "monitoring/grafana/provisioning/datasources/datasources.yml",
        Owner.GENERATOR,
    ),
    (
        "grafana_dashboards.yml.j2",
        "monitoring/grafana/provisioning/dashboards/dashboards.yml",
        Owner.GENERATOR,
    ),
    ("grafana_dashboard.json.j2", "monitoring/grafana/dashboards/service.json", Owner.GENERATOR),
)

_RABBITMQ_PLUGINS = (
    "rabbitmq_enabled_plugins.j2",
    "monitoring/rabbitmq_enabled_plugins",
    Owner.GENERATOR,
)
# Files whose content follows the broker or the pattern although the user owns them: a
# switch rewrites them too (unless the user changed them, which the summary then reports).
_FOLLOW_A_SWITCH = frozenset({"pyproject.toml", "{package}/messaging/handlers.py"})


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        undefined=jinja2.StrictUndefined,  # a typo in a template fails generation, not the user
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 (renders Python, YAML and Markdown, never HTML)
    )


def _idempotency_url(plan: ServicePlan, *, container: bool) -> str:
    """Where the service keeps done-marks: its Redis when it has one, else PostgreSQL."""
    if plan.broker.key.value == "redis":
        return f"redis://{'redis' if container else 'localhost'}:6379/0"
    if container:  # compose fills in the password from the environment or .env
        return "postgresql://app:${POSTGRES_PASSWORD:-change-me}@postgres:5432/app"
    return "postgresql://app:change-me@localhost:5432/app"


def template_context(plan: ServicePlan) -> dict[str, object]:
    """The variables every template sees."""
    base = re.sub(r"[_-]?service$", "", plan.package) or plan.package
    traits = traits_of(plan.broker)
    uses_postgres = plan.broker.key.value != "redis"
    extras = [plan.broker.extra, "metrics", *(["postgres"] if uses_postgres else [])]
    fmt = formats.format_named(plan.message_format)
    if fmt.extra is not None:
        extras.append(fmt.extra)
    topic = f"{base}.{_TOPIC_SUFFIX[plan.pattern]}"
    partitioned = plan.pattern is Pattern.EVENT_STREAMING and not traits.ordered_across_members
    return {
        "name": plan.name,
        "package": plan.package,
        "base": base,
        "title": " ".join(part.capitalize() for part in re.split(r"[_\W]+", plan.name) if part),
        "broker": plan.broker,
        "broker_key": plan.broker.key.value,
        "profile": plan.broker.profile,
        "caps": traits,
        "pattern": plan.pattern.value,
        "pattern_title": plan.broker.titles[plan.pattern],
        "message_format": plan.message_format,
        "monitoring": plan.monitoring,
        "topic": topic,
        # Per-key order across workers: Kafka partitions give it; elsewhere the stream is
        # split into partition topics, each read by one worker (see messages.py.j2).
        "partitioned": partitioned,
        "topics": [f"{topic}.p{p}" for p in range(PARTITIONS)] if partitioned else [topic],
        "defaults": SERVICE_DEFAULTS,
        "idempotency_url": _idempotency_url(plan, container=False),
        "container_idempotency_url": _idempotency_url(plan, container=True),
        "uses_postgres": uses_postgres,
        "extras": ",".join(sorted(extras)),
        "wheel": wheel.wheel_name(),
        "generator_version": GENERATOR_VERSION,
        **_format_context(plan, fmt),
    }


# The message each pattern carries, and the file stem of its schema.
_RECORDS = {
    Pattern.WORK_QUEUE: ("Task", "task"),
    Pattern.PUB_SUB: ("Notification", "notification"),
    Pattern.EVENT_STREAMING: ("DomainEvent", "domain_event"),
}


def _registry_urls(plan: ServicePlan) -> tuple[str, str]:
    """The compose schema registry's URL from the host and from the worker container.

    Kafka services get Confluent's registry (it keeps schemas in Kafka, which they have);
    the others Apicurio with its Confluent-compatible API, its schemas in PostgreSQL.
    """
    if plan.broker.key.value == "kafka":
        return "http://localhost:8081", "http://schema-registry:8081"
    path = "/apis/ccompat/v7"
    return f"http://localhost:8081{path}", f"http://schema-registry:8080{path}"


def _format_context(plan: ServicePlan, fmt: formats.FormatChoice) -> dict[str, object]:
    """What the templates need to wire the message format (codec, schema file, registry)."""
    record, stem = _RECORDS[plan.pattern]
    host_registry, container_registry = _registry_urls(plan)
    return {
        "fmt": fmt,
        "schema_format": fmt.uses_registry,
        "record": record,
        "schema_stem": stem,
        "schema_file": f"{stem}{fmt.schema_suffix}",
        "local_registry_url": formats.LOCAL_REGISTRY_URL,
        "registry_url": host_registry,
        "container_registry_url": container_registry,
        # Apicurio keeps its schemas in PostgreSQL: a Redis service gets one for it.
        "compose_postgres": plan.broker.key.value != "redis"
        or (fmt.uses_registry and plan.broker.key.value != "kafka"),
    }


def _format_files(plan: ServicePlan) -> tuple[tuple[str, str, Owner], ...]:
    """The codec module and the schema file of a service whose messages carry a schema id."""
    fmt = formats.format_named(plan.message_format)
    if not fmt.uses_registry:
        return ()
    stem = _RECORDS[plan.pattern][1]
    schema = (
        f"schema_{fmt.codec_module}.j2",
        f"{{package}}/messaging/schemas/{stem}{fmt.schema_suffix}",
        Owner.USER,  # the schema evolves with the service: yours, checked by its tests
    )
    codec = ("codecs.py.j2", "{package}/messaging/codecs.py", Owner.GENERATOR)
    schema_test = ("test_schema.py.j2", "tests/test_{package}_schema.py", Owner.GENERATOR)
    return (codec, schema, schema_test)


_TOPIC_SUFFIX = {
    Pattern.WORK_QUEUE: "tasks",
    Pattern.PUB_SUB: "events",
    Pattern.EVENT_STREAMING: "stream",
}


def render(plan: ServicePlan) -> dict[str, tuple[bytes, Owner]]:
    """Every file of the service: relative path -> (content, owner)."""
    env = _environment()
    context = template_context(plan)
    specs = _FILES + _format_files(plan) + (_MONITORING_FILES if plan.monitoring else ())
    if plan.monitoring and plan.broker.key.value == "rabbitmq":
        # rabbitmq_prometheus is not enabled by default in every image tag; say so explicitly.
        specs += (_RABBITMQ_PLUGINS,)
    rendered: dict[str, tuple[bytes, Owner]] = {}
    for template, out, owner in specs:
        text = env.get_template(template).render(context)
        rendered[out.format(package=plan.package)] = (text.encode("utf-8"), owner)
    # The eventwire this project depends on, by direct reference (see setup/wheel.py).
    rendered[f"wheels/{context['wheel']}"] = (wheel.build_wheel(), Owner.GENERATOR)
    return rendered


def write_service(plan: ServicePlan, *, update: bool = False) -> SetupSummary:
    """Write (or with ``update`` refresh) the service and describe what was done."""
    files = render(plan)
    manifest = Manifest(
        name=plan.name,
        package=plan.package,
        broker=plan.broker.profile,
        pattern=plan.pattern.value,
        message_format=plan.message_format,
        monitoring=plan.monitoring,
        generator_version=GENERATOR_VERSION,
    )
    if update:
        follow: set[str] = set()
        if plan.switching:
            follow = {p.format(package=plan.package) for p in _FOLLOW_A_SWITCH}
        old = Manifest.read(plan.target)
        wheels = {path for path in files if path.startswith("wheels/")}
        if old is not None and not wheels <= set(old.files):
            follow.add("pyproject.toml")  # it names the wheel: a new eventwire renames it
        outcome = writer.update_tree(plan.target, files, manifest, refresh_user_files=follow)
    else:
        outcome = writer.create_tree(plan.target, files, manifest)
    return build_summary(plan, outcome, updated=update)
