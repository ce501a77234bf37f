"""Serialization layer: ``ByContentType``, one handler reading several encodings of a topic.

For a topic moving from JSON to Avro, or fed by producers using different codecs, annotate
``Annotated[Order, ByContentType(avro, json_schema)]``: each message is decoded by the codec
its ``content-type`` names; without one eventwire knows (Confluent producers on Kafka set
none) by the writer schema's type in the registry; plain ``application/json`` by the usual
JSON decoder into the same type.
"""

from __future__ import annotations

from typing import Any

from eventwire.core.errors import ConfigurationError, DecodeError
from eventwire.core.message import Message
from eventwire.serialization import codec as plain_codecs
from eventwire.serialization import wire
from eventwire.serialization.json import JSON_CONTENT_TYPE
from eventwire.serialization.schema_codec import AsyncDecoder, SchemaCodec


class ByContentType:
    """Picks one of ``codecs`` per message; ``json=False`` refuses plain JSON bodies."""

    def __init__(self, *codecs: SchemaCodec[Any], json: bool = True) -> None:
        if not codecs:
            raise ConfigurationError("ByContentType needs at least one schema codec")
        self.codecs = codecs
        self.json = json

    def decoder_for(self, annotation: object) -> AsyncDecoder:
        by_header = {c.content_type: c.decoder_for(annotation) for c in self.codecs}
        by_type = {c.schema_type: by_header[c.content_type] for c in self.codecs}
        plain = plain_codecs.decoder_for(annotation) if self.json else None
        first = self.codecs[0]

        async def decode(message: Message) -> Any:
            chosen = by_header.get(message.content_type)
            if chosen is not None:
                return await chosen(message)
            if plain is not None and message.content_type.startswith(JSON_CONTENT_TYPE):
                return plain(message)
            writer = await first.writer_schema(wire.schema_id_of(message.body))
            chosen = by_type.get(writer.schema_type)
            if chosen is None:
                raise DecodeError(
                    f"no codec for {writer.schema_type} bodies (content type "
                    f"{message.content_type!r}) on this subscriber"
                )
            return await chosen(message)

        return decode

    def __repr__(self) -> str:
        return f"<ByContentType {', '.join(type(c).__name__ for c in self.codecs)}>"
