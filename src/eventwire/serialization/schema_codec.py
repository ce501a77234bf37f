"""Serialization layer: ``SchemaCodec``, what Avro, Protobuf and JSON Schema codecs share.

A codec owns one schema (the one it writes and reads into), a registry, and the subject the
schema lives under (``TOPIC-value`` by default: Confluent's TopicNameStrategy, so Java, Go
and Node services find it). Publishing: ``await codec.message(payload, topic=...)`` is a
``Message`` in the Confluent wire format, ready for ``app.publish``. Consuming: annotate the
handler's first parameter ``Annotated[Model, codec]`` (or the message class for Protobuf):
``codec.decoder_for(Model)`` is the async decoder the runtime awaits.

What a consumer meets, and what it becomes:

* not the wire format, a truncated body, bytes that do not decode under the writer's schema,
  a writer schema the reader cannot resolve -> ``DecodeError`` (DLQ reason ``decode-error``)
* an id the registry does not know -> ``SchemaUnknownError`` (``schema-unknown``)
* decodable but not a valid instance of the handler's model -> ``ValidationError``
* the registry unreachable, timing out or failing -> ``RegistryUnavailableError``: transient,
  the delivery is retried, never dead-lettered
"""

from __future__ import annotations

import asyncio
import os
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import orjson

from eventwire.core.errors import ConfigurationError, DecodeError, MessageError
from eventwire.core.message import Message
from eventwire.serialization import wire
from eventwire.serialization.registry import (
    RegistryError,
    RegistryUnavailableError,
    Schema,
    SchemaNotFoundError,
    SchemaRegistry,
    SchemaType,
    SchemaUnknownError,
)

SubjectName = str | Callable[[str], str]
AsyncDecoder = Callable[[Message], Awaitable[Any]]
W = TypeVar("W")  # a writer schema, parsed for this codec's library


def read_json_schema_file(path: str | os.PathLike[str], what: str) -> Any:
    """A JSON schema file (``.avsc``, JSON Schema) parsed; ``ConfigurationError`` if not."""
    try:
        return orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} file {path}: {exc}") from exc
    except orjson.JSONDecodeError as exc:
        raise ConfigurationError(f"{what} file {path} is not JSON: {exc}") from exc


def topic_subject(topic: str) -> str:
    """Confluent's default TopicNameStrategy for message values."""
    return f"{topic}-value"


class SchemaCodec(ABC, Generic[W]):
    """Encodes to and decodes from the Confluent wire format with a registry's schemas."""

    schema_type: ClassVar[SchemaType]
    content_type: ClassVar[str]

    def __init__(
        self,
        registry: SchemaRegistry,
        *,
        subject: SubjectName = topic_subject,
        auto_register: bool = True,
    ) -> None:
        """``subject``: a fixed name or a function of the topic; ``auto_register=False``
        publishes only a schema already registered under the subject (CI registers it)."""
        self.registry = registry
        self._subject = subject
        self._auto_register = auto_register
        self._ids: dict[str, int] = {}
        self._writers: dict[int, W] = {}
        self._fetching: dict[int, asyncio.Future[W]] = {}

    # -- what each codec provides -----------------------------------------------------------

    @property
    @abstractmethod
    def schema(self) -> Schema:
        """The schema this codec writes (and reads into)."""

    @abstractmethod
    def _serialize(self, payload: Any) -> bytes:
        """The payload in the schema's encoding, unframed; ``MessageError`` if it does not fit."""

    @abstractmethod
    def _parse_writer(self, schema: Schema) -> W:
        """A writer schema from the registry, ready to decode with; ``DecodeError`` if not."""

    @abstractmethod
    def _deserialize(self, body: bytes, schema_id: int, writer: W) -> Any:
        """The decoded value (a dict, or a Protobuf message); ``DecodeError`` if it is not."""

    def _frame(self, schema_id: int, payload: bytes) -> bytes:
        return wire.frame(schema_id, payload)

    def _into(self, annotation: object) -> Callable[[Any], Any]:
        """Turns a decoded value into the handler's annotated type (default: as decoded)."""
        from eventwire.serialization.schema_targets import converter_for

        return converter_for(annotation)

    # -- publishing -------------------------------------------------------------------------

    def subject_for(self, topic: str) -> str:
        return self._subject(topic) if callable(self._subject) else self._subject

    async def schema_id(self, topic: str) -> int:
        """The registry id of this codec's schema for ``topic`` (registered if allowed)."""
        subject = self.subject_for(topic)
        cached = self._ids.get(subject)
        if cached is not None:
            return cached
        try:
            if self._auto_register:
                schema_id = await self.registry.register(subject, self.schema)
            else:
                schema_id = (await self.registry.lookup(subject, self.schema)).schema_id
        except SchemaNotFoundError as exc:
            raise MessageError(
                f"schema not registered under subject {subject!r} (auto_register is off): "
                "register it with 'eventwire schema register'"
            ) from exc
        self._ids[subject] = schema_id
        return schema_id

    async def encode(self, payload: Any, *, topic: str) -> bytes:
        """``payload`` framed with its schema id; ``MessageError`` if it does not fit."""
        schema_id = await self.schema_id(topic)
        return self._frame(schema_id, self._serialize(payload))

    async def message(
        self,
        payload: Any,
        *,
        topic: str,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Message:
        """A ``Message`` for ``app.publish(topic, message)`` / ``ctx.publish``."""
        body = await self.encode(payload, topic=topic)
        return Message(
            body=body, key=key, headers=dict(headers or {}), content_type=self.content_type
        )

    # -- consuming --------------------------------------------------------------------------

    async def decode(self, body: bytes) -> Any:
        """A framed body decoded with its writer's schema into this codec's schema."""
        schema_id = wire.schema_id_of(body)
        writer = await self._writer(schema_id)
        return self._deserialize(body, schema_id, writer)

    def decoder_for(self, annotation: object) -> AsyncDecoder:
        """The async decoder for a handler whose first parameter is ``annotation``."""
        into = self._into(annotation)
        decode = self.decode

        async def decode_message(message: Message) -> Any:
            return into(await decode(message.body))

        return decode_message

    async def _writer(self, schema_id: int) -> W:
        found = self._writers.get(schema_id)
        if found is not None:
            return found
        # Many deliveries naming one new id arrive together: one registry call serves them.
        pending = self._fetching.get(schema_id)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch_writer(schema_id))
            self._fetching[schema_id] = pending
            pending.add_done_callback(lambda _: self._fetching.pop(schema_id, None))
        return await asyncio.shield(pending)

    async def writer_schema(self, schema_id: int) -> Schema:
        """The registry's schema ``schema_id`` with consumer-side errors: ``SchemaUnknownError``
        when it has none, ``RegistryUnavailableError`` for any other registry failure."""
        try:
            return await self.registry.schema_by_id(schema_id)
        except SchemaNotFoundError as exc:
            raise SchemaUnknownError(f"schema id {schema_id} is not in the registry") from exc
        except RegistryError as exc:
            # Refused credentials or a broken server are the operator's to fix, not the
            # message's fault: retried like an outage, never dead-lettered.
            raise RegistryUnavailableError(f"schema registry error: {exc}") from exc

    async def _fetch_writer(self, schema_id: int) -> W:
        schema = await self.writer_schema(schema_id)
        if schema.schema_type != self.schema_type:
            raise DecodeError(
                f"schema id {schema_id} is a {schema.schema_type} schema; this subscriber "
                f"decodes {self.schema_type}"
            )
        writer = self._parse_writer(schema)
        self._writers[schema_id] = writer
        return writer

    def __repr__(self) -> str:
        return f"<{type(self).__name__} subject={self._subject!r} registry={self.registry!r}>"
