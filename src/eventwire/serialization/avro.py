"""Serialization layer: ``AvroCodec``, Avro (fastavro) in the Confluent wire format.

The schema comes from an ``.avsc`` file, a dict, or a pydantic model (``avro_schema_for``).
Decoding resolves the writer's schema (looked up by the id in the body, cached) into this
codec's schema as the reader's, by Avro's resolution rules: a consumer on an older or newer
schema reads what a compatible producer wrote. Needs the ``avro`` extra.
"""

from __future__ import annotations

import io
from typing import Any, ClassVar, Final

import fastavro
import orjson
import pydantic
from fastavro.read import SchemaResolutionError

from eventwire.core.errors import ConfigurationError, DecodeError, MessageError
from eventwire.serialization.avro_schema import avro_ready, avro_schema_for
from eventwire.serialization.document_codec import DocumentCodec, DocumentSource
from eventwire.serialization.registry import Schema

AVRO_CONTENT_TYPE: Final = "application/vnd.confluent.avro"

AvroSource = DocumentSource


class AvroCodec(DocumentCodec[Any]):
    """Avro values (dicts or pydantic models) in and out of the Confluent wire format."""

    schema_type: ClassVar = "AVRO"
    content_type: ClassVar = AVRO_CONTENT_TYPE

    document_name: ClassVar = "Avro schema"
    document_article: ClassVar = "an"
    in_memory_types: ClassVar = (dict, list)

    def _compile(self, raw: Any) -> None:
        try:
            self._reader = fastavro.parse_schema(raw)
        except Exception as exc:  # fastavro raises several kinds for a bad schema
            raise ConfigurationError(f"not a valid Avro schema: {exc}") from exc
        # Walking every dumped model to turn enums into symbols cost a third of an encode.
        self._has_enums = '"enum"' in orjson.dumps(raw).decode()

    def _from_model(self, model: type[pydantic.BaseModel]) -> Any:
        return avro_schema_for(model)

    def _serialize(self, payload: Any) -> bytes:
        if isinstance(payload, pydantic.BaseModel):
            payload = payload.model_dump(by_alias=True)
            if self._has_enums:
                payload = avro_ready(payload)
        out = io.BytesIO()
        try:
            fastavro.schemaless_writer(out, self._reader, payload, strict=True)
        except Exception as exc:  # wrong types surface as ValueError/TypeError/KeyError...
            raise MessageError(f"payload does not fit the Avro schema: {exc}") from exc
        return out.getvalue()

    def _parse_writer(self, schema: Schema) -> Any:
        try:
            return fastavro.parse_schema(orjson.loads(schema.schema))
        except Exception as exc:  # a registry answer that is not Avro
            raise DecodeError(f"the writer's Avro schema does not parse: {exc}") from exc

    def _deserialize(self, body: bytes, schema_id: int, writer: Any) -> Any:
        stream = io.BytesIO(body)
        stream.seek(5)
        try:
            value = fastavro.schemaless_reader(stream, writer, self._reader)
        except SchemaResolutionError as exc:
            raise DecodeError(
                f"the reader's schema cannot resolve writer schema {schema_id}: {exc}"
            ) from exc
        except Exception as exc:  # truncated or random bytes: EOFError, ValueError, ...
            raise DecodeError(
                f"body does not decode under writer schema {schema_id}: {type(exc).__name__}: {exc}"
            ) from exc
        if stream.tell() != len(body):
            raise DecodeError(
                f"{len(body) - stream.tell()} bytes left over after the Avro value of "
                f"writer schema {schema_id}: not what that schema wrote"
            )
        return value
