"""Serialization layer: what a schema registry is to eventwire: its values, errors and protocol.

Two implementations: ``HTTPSchemaRegistry`` (the Confluent-compatible REST API: Confluent
Schema Registry, Apicurio's ``/apis/ccompat/v7``, Karapace, Redpanda) and
``FileSchemaRegistry`` (one JSON file, for development and tests with no server).
``open_registry(url)`` picks one by URL. Stdlib only: the HTTP library loads with the HTTP
registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal, Protocol, TypeAlias

from eventwire.core.errors import ConfigurationError, DecodeError, EventwireError

SchemaType: TypeAlias = Literal["AVRO", "PROTOBUF", "JSON"]
SCHEMA_TYPES: Final[tuple[SchemaType, ...]] = ("AVRO", "PROTOBUF", "JSON")

COMPATIBILITY_LEVELS: Final = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SchemaReference:
    """Another subject's schema this one imports (a Protobuf import, an Avro named type)."""

    name: str
    subject: str
    version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Schema:
    """A schema as the registry holds it: its text and type."""

    schema: str = field(repr=False)
    schema_type: SchemaType = "AVRO"
    references: tuple[SchemaReference, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisteredSchema:
    """A schema under a subject: its global id and its version in that subject."""

    subject: str
    version: int
    schema_id: int
    schema: Schema


@dataclass(frozen=True, slots=True, kw_only=True)
class Compatibility:
    """The answer to "may this schema be the subject's next version?"."""

    compatible: bool
    level: str
    messages: tuple[str, ...] = ()


class RegistryError(EventwireError):
    """The registry answered with an error (bad schema, incompatible, not allowed)."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class SchemaNotFoundError(RegistryError):
    """No such schema id, subject or version."""


class RegistryUnavailableError(EventwireError):
    """The registry could not be reached (or kept failing) within the retries: transient.

    A consumer that meets this waits and tries the same delivery again; it never dead-letters
    a message because the registry was down.
    """

    transient = True


class SchemaUnknownError(DecodeError):
    """A body names a schema id the registry does not have: dead-lettered, not retried."""

    reason = "schema-unknown"


class SchemaRegistry(Protocol):
    """The registry operations eventwire uses; ids are global and immutable, so an
    implementation may cache id -> schema forever and (subject, schema) -> id likewise."""

    async def register(self, subject: str, schema: Schema) -> int:
        """The id of ``schema`` under ``subject``, registering a new version if needed."""
        ...

    async def lookup(self, subject: str, schema: Schema) -> RegisteredSchema:
        """``schema`` as already registered under ``subject``; ``SchemaNotFoundError`` if not."""
        ...

    async def schema_by_id(self, schema_id: int) -> Schema:
        """The schema with global id ``schema_id``; ``SchemaNotFoundError`` if none."""
        ...

    async def version(self, subject: str, version: int | Literal["latest"]) -> RegisteredSchema:
        """One version of ``subject``."""
        ...

    async def subjects(self) -> list[str]: ...

    async def versions(self, subject: str) -> list[int]: ...

    async def compatibility_level(self, subject: str) -> str:
        """The subject's level, else the registry's default."""
        ...

    async def set_compatibility_level(self, subject: str, level: str) -> None: ...

    async def check_compatibility(self, subject: str, schema: Schema) -> Compatibility:
        """Whether ``schema`` may become ``subject``'s next version under its level."""
        ...

    async def aclose(self) -> None: ...


# Registries cap ``GET /subjects`` without saying so: Apicurio at ``apicurio.ccompat.max-subjects``
# (default 1,000; it also ignores ``subjectPrefix``). The API has no paging, so a list this
# long is reported as possibly cut short rather than passed on as complete.
SUBJECT_LIST_CAP: Final = 1000


def possibly_capped(subjects: list[str]) -> bool:
    """Whether a subject list is as long as a registry's usual silent cap (may be cut short)."""
    return len(subjects) >= SUBJECT_LIST_CAP


def check_level(level: str) -> str:
    """``level`` upper-cased if it is a compatibility level, else ``ConfigurationError``."""
    upper = level.upper()
    if upper not in COMPATIBILITY_LEVELS:
        raise ConfigurationError(
            f"unknown compatibility level {level!r}: use one of {', '.join(COMPATIBILITY_LEVELS)}"
        )
    return upper


def open_registry(url: str, **options: object) -> SchemaRegistry:
    """A registry for ``url``: ``http(s)://...`` is the REST API, ``file://PATH`` (or a plain
    path ending in ``.json``) a local file; ``options`` go to ``HTTPSchemaRegistry``."""
    if url.startswith(("http://", "https://")):
        from eventwire.serialization.registry_http import HTTPSchemaRegistry

        return HTTPSchemaRegistry(url, **options)  # type: ignore[arg-type]
    if url.startswith("file://") or url.endswith(".json"):
        from eventwire.serialization.registry_file import FileSchemaRegistry

        if options:
            raise ConfigurationError(
                f"a file registry takes no options, got {', '.join(sorted(options))}"
            )
        return FileSchemaRegistry(url.removeprefix("file://"))
    raise ConfigurationError(
        f"unsupported schema registry URL {_scheme(url)!r}: use http(s)://HOST[:PORT][/PATH] "
        "or file://PATH.json"
    )


def _scheme(url: str) -> str:
    # Never echo a whole URL back: it may carry credentials.
    return url.split("://", 1)[0] + "://..." if "://" in url else "(no scheme)"
