"""Serialization layer: ``JSONSchemaCodec``, JSON bodies validated against registered schemas.

The body is UTF-8 JSON after the Confluent header. Publishing validates against this codec's
schema (nothing invalid is sent); consuming validates against the *writer's* schema, looked
up by the id in the body, as Confluent's deserializers do, then builds the handler's type.
The schema comes from a dict, a ``.json`` file or a pydantic model (its JSON Schema). Needs
the ``jsonschema`` extra.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Final

import jsonschema
import orjson
import pydantic
from jsonschema.exceptions import SchemaError, best_match

from eventwire.core.errors import ConfigurationError, DecodeError, MessageError, ValidationError
from eventwire.serialization.document_codec import DocumentCodec
from eventwire.serialization.registry import Schema

JSON_SCHEMA_CONTENT_TYPE: Final = "application/vnd.confluent.jsonschema"

JSONSchemaSource = str | os.PathLike[str] | dict[str, Any] | type[pydantic.BaseModel]


class JSONSchemaCodec(DocumentCodec[Any]):
    """JSON values checked against a JSON Schema, in the Confluent wire format."""

    schema_type: ClassVar = "JSON"
    content_type: ClassVar = JSON_SCHEMA_CONTENT_TYPE

    document_name: ClassVar = "JSON Schema"
    document_article: ClassVar = "a"
    in_memory_types: ClassVar = (dict,)

    def _compile(self, raw: Any) -> None:
        self._validator = _validator(raw, ConfigurationError)

    def _from_model(self, model: type[pydantic.BaseModel]) -> Any:
        return model.model_json_schema()

    def _serialize(self, payload: Any) -> bytes:
        if isinstance(payload, pydantic.BaseModel):
            payload = payload.model_dump(mode="json", by_alias=True)
        error = best_match(self._validator.iter_errors(payload))
        if error is not None:
            raise MessageError(f"payload does not match the JSON Schema: {_describe(error)}")
        try:
            return orjson.dumps(payload)
        except TypeError as exc:
            raise MessageError(f"payload is not JSON-serializable: {exc}") from exc

    def _parse_writer(self, schema: Schema) -> Any:
        try:
            raw = orjson.loads(schema.schema)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"the writer's JSON Schema is not JSON: {exc}") from exc
        return _validator(raw, DecodeError)

    def _deserialize(self, body: bytes, schema_id: int, writer: Any) -> Any:
        try:
            value = orjson.loads(memoryview(body)[5:])
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"body is not valid JSON after the schema header: {exc}") from exc
        try:
            error = best_match(writer.iter_errors(value))
        except Exception as exc:  # a hostile schema/value pair (regex, recursion)
            raise DecodeError(f"cannot validate against writer schema {schema_id}: {exc}") from exc
        if error is not None:
            raise ValidationError(
                f"body does not match writer schema {schema_id}: {_describe(error)}"
            )
        return value


def _validator(raw: Any, error: type[Exception]) -> Any:
    try:
        cls = jsonschema.validators.validator_for(raw)
        cls.check_schema(raw)
        return cls(raw)
    except (SchemaError, TypeError, AttributeError) as exc:
        raise error(f"not a valid JSON Schema: {getattr(exc, 'message', exc)}") from exc


def _describe(error: Any) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"at {where}: {error.message}"
