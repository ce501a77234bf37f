"""CLI layer: ``eventwire schema register|check|list|show|diff``, a registry from the shell.

The registry is ``--registry URL``, else ``$EVENTWIRE_SCHEMA_REGISTRY_URL``, else the local
file registry ``.eventwire/schemas.json`` (no server). ``check`` exits 1 when the schema may
not become the subject's next version, naming the field at fault for Avro, so it can gate a
deploy in CI. Every command takes ``--json``. Registry modules are imported inside commands.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar

import typer

from eventwire.cli.errors import CLIError

if TYPE_CHECKING:
    from eventwire.serialization.registry import Schema, SchemaRegistry

REGISTRY_ENV: Final = "EVENTWIRE_SCHEMA_REGISTRY_URL"
DEFAULT_REGISTRY: Final = "file://.eventwire/schemas.json"
INCOMPATIBLE_EXIT: Final = 1
_TYPES: Final = {"avro": "AVRO", "protobuf": "PROTOBUF", "json": "JSON", "json-schema": "JSON"}
T = TypeVar("T")

schema_app = typer.Typer(
    name="schema",
    help="Register, check, list, show and diff schemas in a schema registry.",
    no_args_is_help=True,
)
RegistryOption = Annotated[
    str | None,
    typer.Option(
        "--registry",
        "-r",
        help=f"Registry URL (http(s)://... or file://PATH.json); default ${REGISTRY_ENV}, "
        f"else {DEFAULT_REGISTRY}.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
SubjectArgument = Annotated[str, typer.Argument(help="The subject, e.g. orders.placed-value.")]
FileArgument = Annotated[
    Path, typer.Argument(help="Schema file: .avsc (Avro), .proto (Protobuf), .json.")
]
TypeOption = Annotated[
    str | None,
    typer.Option("--type", "-t", help="avro, protobuf or json (default: from the file)."),
]
VersionOption = Annotated[
    str, typer.Option("--version", "-v", help="A version number or 'latest'.")
]


@schema_app.command("register")
def register(
    subject: SubjectArgument,
    file: FileArgument,
    schema_type: TypeOption = None,
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register FILE as SUBJECT's next version (or find it already registered)."""
    schema = _read_schema(file, schema_type)

    async def go(client: SchemaRegistry) -> dict[str, Any]:
        schema_id = await client.register(subject, schema)
        found = await client.lookup(subject, schema)
        return {"subject": subject, "id": schema_id, "version": found.version}

    result = _with_registry(registry, go)
    _print(as_json, result, f"{subject}: version {result['version']}, schema id {result['id']}")


@schema_app.command("check")
def check(
    subject: SubjectArgument,
    file: FileArgument,
    schema_type: TypeOption = None,
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Exit 0 if FILE may become SUBJECT's next version under its compatibility level, else
    print why and exit 1."""
    schema = _read_schema(file, schema_type)

    async def go(client: SchemaRegistry) -> dict[str, Any]:
        verdict = await client.check_compatibility(subject, schema)
        messages = list(verdict.messages)
        if not verdict.compatible and schema.schema_type == "AVRO":
            reasons = await _avro_reasons(client, subject, schema, verdict.level)
            messages += [r for r in reasons if r not in messages]
        if not verdict.compatible and not messages:
            messages = ["the registry refused it without giving a reason"]
        return {
            "subject": subject,
            "level": verdict.level,
            "compatible": verdict.compatible,
            "messages": messages,
        }

    result = _with_registry(registry, go)
    if result["compatible"]:
        _print(
            as_json,
            result,
            f"compatible: {file} may be {subject}'s next version ({result['level']})",
        )
        return
    lines = [f"incompatible: {file} may not be {subject}'s next version ({result['level']}):"]
    lines += [f"  - {m}" for m in result["messages"]]
    _print(as_json, result, "\n".join(lines))
    raise typer.Exit(INCOMPATIBLE_EXIT)


@schema_app.command("list")
def list_subjects(
    subject: Annotated[
        str | None, typer.Argument(help="A subject: list its versions instead.")
    ] = None,
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the registry's subjects, or SUBJECT's versions."""

    async def go(client: SchemaRegistry) -> Any:
        if subject is None:
            return {"subjects": await client.subjects()}
        return {"subject": subject, "versions": await client.versions(subject)}

    result = _with_registry(registry, go)
    if subject is None:
        from eventwire.serialization.registry import possibly_capped

        capped = possibly_capped(result["subjects"])
        if as_json:
            result["possibly_capped"] = capped
        _print(as_json, result, "\n".join(result["subjects"]) or "(no subjects)")
        if capped:
            typer.echo(
                f"warning: the registry listed {len(result['subjects'])} subjects, the usual"
                " server cap: there may be more (Apicurio: raise apicurio.ccompat.max-subjects)",
                err=True,
            )
    else:
        _print(as_json, result, " ".join(str(v) for v in result["versions"]))


@schema_app.command("show")
def show(
    subject: SubjectArgument,
    version: VersionOption = "latest",
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print one version of SUBJECT (default: the latest) with its id and level."""

    async def go(client: SchemaRegistry) -> dict[str, Any]:
        found = await client.version(subject, _version(version))
        return {
            "subject": subject,
            "version": found.version,
            "id": found.schema_id,
            "schemaType": found.schema.schema_type,
            "compatibility": await client.compatibility_level(subject),
            "schema": found.schema.schema,
        }

    result = _with_registry(registry, go)
    head = (
        f"{subject} version {result['version']} (id {result['id']}, {result['schemaType']}, "
        f"{result['compatibility']})"
    )
    _print(as_json, result, head + "\n" + _pretty(result["schema"], result["schemaType"]))


@schema_app.command("diff")
def diff(
    subject: SubjectArgument,
    file: FileArgument,
    *,
    version: VersionOption = "latest",
    schema_type: TypeOption = None,
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show how FILE differs from a version of SUBJECT; for Avro, also who can read whom."""
    schema = _read_schema(file, schema_type)

    async def go(client: SchemaRegistry) -> dict[str, Any]:
        found = await client.version(subject, _version(version))
        old = _pretty(found.schema.schema, found.schema.schema_type).splitlines()
        new = _pretty(schema.schema, schema.schema_type).splitlines()
        result: dict[str, Any] = {
            "subject": subject,
            "version": found.version,
            "diff": list(
                difflib.unified_diff(
                    old, new, f"{subject} v{found.version}", str(file), lineterm=""
                )
            ),
        }
        if schema.schema_type == "AVRO" == found.schema.schema_type:
            from eventwire.serialization.avro_compat import reader_problems

            old_avro, new_avro = json.loads(found.schema.schema), json.loads(schema.schema)
            result["new_reads_old"] = reader_problems(new_avro, old_avro)
            result["old_reads_new"] = reader_problems(old_avro, new_avro)
        return result

    result = _with_registry(registry, go)
    lines = result["diff"] or [f"no difference from {subject} version {result['version']}"]
    for key, what in (("new_reads_old", "backward"), ("old_reads_new", "forward")):
        if key in result:
            problems = result[key]
            lines.append(f"{what}: " + ("ok" if not problems else "; ".join(problems)))
    _print(as_json, result, "\n".join(lines))


def register_commands(app: typer.Typer) -> None:
    """Add the ``schema`` group to ``app``."""
    app.add_typer(schema_app)


# -- helpers ------------------------------------------------------------------------------


def registry_url(option: str | None) -> str:
    return option or os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY


def _with_registry(option: str | None, work: Callable[[SchemaRegistry], Awaitable[T]]) -> T:
    from eventwire.serialization.registry import open_registry

    async def go() -> T:
        client = open_registry(registry_url(option))
        try:
            return await work(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


def _read_schema(file: Path, schema_type: str | None) -> Schema:
    from eventwire.serialization.registry import Schema

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"cannot read schema file {file}: {exc}") from exc
    kind = _TYPES.get((schema_type or "").lower()) if schema_type else _guess(file, text)
    if kind is None:
        raise CLIError(f"unknown schema type {schema_type!r}: use avro, protobuf or json")
    if kind in ("AVRO", "JSON"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CLIError(f"{file} is not JSON ({exc}); a {kind} schema must be") from exc
        text = json.dumps(parsed, separators=(",", ":"))
        if kind == "AVRO":
            _check_avro(file, parsed)
    return Schema(schema=text, schema_type=kind)  # type: ignore[arg-type]


def _guess(file: Path, text: str) -> str:
    suffix = file.suffix.lower()
    if suffix == ".avsc":
        return "AVRO"
    if suffix == ".proto":
        return "PROTOBUF"
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CLIError(
            f"cannot tell the schema type of {file}: not JSON ({exc}); pass --type"
        ) from exc
    avro_types = ("record", "enum", "fixed", "array", "map")
    if isinstance(parsed, list | str) or (
        isinstance(parsed, dict) and parsed.get("type") in avro_types and "name" in parsed
    ):
        return "AVRO"
    return "JSON"


def _check_avro(file: Path, parsed: Any) -> None:
    try:
        import fastavro
    except ImportError:  # the registry validates it anyway
        return
    try:
        fastavro.parse_schema(parsed)
    except Exception as exc:  # fastavro raises several kinds for a bad schema
        raise CLIError(f"{file} is not a valid Avro schema: {exc}") from exc


async def _avro_reasons(
    client: SchemaRegistry, subject: str, schema: Schema, level: str
) -> list[str]:
    """The registry says no without saying why (Apicurio): name the fields ourselves."""
    from eventwire.serialization.avro_compat import problems_for

    numbers = await client.versions(subject)
    if not level.endswith("_TRANSITIVE"):
        numbers = numbers[-1:]
    previous = []
    for number in numbers:
        found = await client.version(subject, number)
        if found.schema.schema_type == "AVRO":
            previous.append(json.loads(found.schema.schema))
    return problems_for(level, json.loads(schema.schema), previous)


def _version(text: str) -> int | Any:
    if text == "latest":
        return "latest"
    try:
        return int(text)
    except ValueError:
        raise CLIError(f"--version must be a number or 'latest', got {text!r}") from None


def _pretty(schema: str, schema_type: str) -> str:
    if schema_type == "PROTOBUF":
        return schema
    try:
        return json.dumps(json.loads(schema), indent=2, sort_keys=False)
    except json.JSONDecodeError:
        return schema


def _print(as_json: bool, result: Any, text: str) -> None:
    typer.echo(json.dumps(result, indent=2) if as_json else text)
