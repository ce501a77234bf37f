"""Setup layer: the message formats `init` offers (--format), as data the templates read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from eventwire.core.errors import ConfigurationError


@dataclass(frozen=True, slots=True, kw_only=True)
class FormatChoice:
    """How a generated service encodes its messages."""

    name: str  # the --format value, kept in the manifest
    display: str
    extra: str | None  # eventwire's pip extra for the codec (None: JSON needs none)
    codec_module: str  # eventwire.serialization.<module>
    codec_class: str
    schema_suffix: str  # the schema file's ending, next to messages.py in schemas/

    @property
    def uses_registry(self) -> bool:
        """Whether messages carry a schema id (the Confluent wire format) and so a registry."""
        return self.extra is not None


FORMATS: Final[dict[str, FormatChoice]] = {
    "json": FormatChoice(
        name="json",
        display="JSON (pydantic)",
        extra=None,
        codec_module="json",
        codec_class="",
        schema_suffix="",
    ),
    "avro": FormatChoice(
        name="avro",
        display="Avro",
        extra="avro",
        codec_module="avro",
        codec_class="AvroCodec",
        schema_suffix=".avsc",
    ),
    "protobuf": FormatChoice(
        name="protobuf",
        display="Protobuf",
        extra="protobuf",
        codec_module="protobuf",
        codec_class="ProtobufCodec",
        schema_suffix=".proto",
    ),
    "json-schema": FormatChoice(
        name="json-schema",
        display="JSON Schema",
        extra="jsonschema",
        codec_module="json_schema",
        codec_class="JSONSchemaCodec",
        schema_suffix=".schema.json",
    ),
}
DEFAULT_FORMAT: Final = "json"

_ALIASES: Final = {"jsonschema": "json-schema", "proto": "protobuf"}

# Where a service's schemas live with no server: the file `eventwire schema` reads by default.
LOCAL_REGISTRY_URL: Final = "file://.eventwire/schemas.json"


def format_named(value: str) -> FormatChoice:
    """The format for ``value`` (json, avro, protobuf, json-schema), or one line saying why not."""
    text = value.strip().lower().replace("_", "-")
    found = FORMATS.get(_ALIASES.get(text, text))
    if found is None:
        raise ConfigurationError(f"unknown format {value!r}: use one of {', '.join(FORMATS)}")
    return found
