"""Serialization layer: ``ProtobufCodec``, generated Protobuf classes in the Confluent format.

The classes come from ``protoc`` (or ``grpcio-tools``) at the user's build; the handler's
annotation is the message class. The body carries the message-index array after the schema
id (see ``wire``), so one .proto file may hold many message types. The schema registered is
the class's file descriptor (base64, as Confluent's own Python serializer registers it) or,
given ``proto=``, the .proto source. Needs the ``protobuf`` extra.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path
from typing import Any, ClassVar, Final

from google.protobuf import descriptor_pb2, json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message as ProtobufMessage

from eventwire.core.errors import ConfigurationError, DecodeError, MessageError
from eventwire.core.message import Message
from eventwire.serialization import wire
from eventwire.serialization.registry import Schema, SchemaRegistry
from eventwire.serialization.schema_codec import (
    AsyncDecoder,
    SchemaCodec,
    SubjectName,
    topic_subject,
)

PROTOBUF_CONTENT_TYPE: Final = "application/vnd.confluent.protobuf"
_TOP_LEVEL_MESSAGE: Final = re.compile(r"^message\s+(\w+)", re.MULTILINE)


class ProtobufCodec(SchemaCodec[list[str] | None]):
    """Instances of one generated message class in and out of the Confluent wire format."""

    schema_type: ClassVar = "PROTOBUF"
    content_type: ClassVar = PROTOBUF_CONTENT_TYPE

    def __init__(
        self,
        message_class: type[ProtobufMessage],
        registry: SchemaRegistry,
        *,
        proto: str | os.PathLike[str] | None = None,
        subject: SubjectName = topic_subject,
        auto_register: bool = True,
    ) -> None:
        """``proto``: the .proto file to register instead of the compiled descriptor."""
        super().__init__(registry, subject=subject, auto_register=auto_register)
        if not (isinstance(message_class, type) and issubclass(message_class, ProtobufMessage)):
            raise ConfigurationError(f"{message_class!r} is not a generated Protobuf class")
        self.message_class = message_class
        self._descriptor = message_class.DESCRIPTOR
        self.indexes = message_indexes(message_class)
        if proto is not None:
            try:
                text = Path(proto).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigurationError(f"cannot read .proto file {proto}: {exc}") from exc
        else:
            text = base64.standard_b64encode(self._descriptor.file.serialized_pb).decode()
        self._schema = Schema(schema=text, schema_type="PROTOBUF")

    @property
    def schema(self) -> Schema:
        return self._schema

    def _frame(self, schema_id: int, payload: bytes) -> bytes:
        return wire.frame(schema_id, payload, indexes=self.indexes)

    def _serialize(self, payload: Any) -> bytes:
        if isinstance(payload, dict):
            try:
                payload = json_format.ParseDict(payload, self.message_class())
            except json_format.ParseError as exc:
                raise MessageError(
                    f"payload does not fit {self._descriptor.full_name}: {exc}"
                ) from exc
        if not isinstance(payload, self.message_class):
            raise MessageError(
                f"expected a {self._descriptor.full_name}, got {type(payload).__name__}"
            )
        return bytes(payload.SerializeToString())

    def _parse_writer(self, schema: Schema) -> list[str] | None:
        """The writer file's top-level message names, to check the index points at ours."""
        return _top_level_names(schema.schema)

    def _deserialize(self, body: bytes, schema_id: int, writer: list[str] | None) -> Any:
        _, indexes, payload = wire.unframe_protobuf(body)
        if writer is not None and len(indexes) == 1:
            if indexes[0] >= len(writer):
                raise DecodeError(
                    f"message index {indexes[0]} is out of range: writer schema {schema_id} "
                    f"has {len(writer)} top-level messages"
                )
            if writer[indexes[0]] != self._descriptor.name:
                raise DecodeError(
                    f"body holds a {writer[indexes[0]]} (writer schema {schema_id}), "
                    f"not a {self._descriptor.name}"
                )
        return parse_message(self.message_class, payload)

    def _into(self, annotation: object) -> Any:
        if annotation is dict:
            return _as_dict
        if annotation in (self.message_class, Any, object, None):
            return _as_is
        raise ConfigurationError(
            f"a Protobuf codec for {self._descriptor.full_name} decodes into that class or "
            f"dict, not {annotation!r}"
        )


def message_indexes(message_class: type[ProtobufMessage]) -> list[int]:
    """Where the class's message sits in its .proto file: ``[top-level, nested...]``."""
    path: list[int] = []
    desc = message_class.DESCRIPTOR
    while desc.containing_type is not None:
        parent = desc.containing_type
        path.insert(0, list(parent.nested_types).index(desc))
        desc = parent
    path.insert(0, list(desc.file.message_types_by_name).index(desc.name))
    return path


def parse_message(message_class: type[ProtobufMessage], payload: bytes | memoryview) -> Any:
    """``payload`` parsed as ``message_class``; ``DecodeError`` for bytes that are not one."""
    try:
        return message_class.FromString(bytes(payload))
    except (ProtobufDecodeError, RuntimeError, ValueError) as exc:
        raise DecodeError(
            f"body is not a valid {message_class.DESCRIPTOR.full_name}: {exc}"
        ) from exc


def unregistered_decoder(message_class: type[ProtobufMessage]) -> AsyncDecoder:
    """For a handler annotated with just the message class: the wire format decoded with the
    class, the schema id not looked up (no registry given; use ``Annotated[Cls, codec]``)."""

    async def decode(message: Message) -> Any:
        _, _, payload = wire.unframe_protobuf(message.body)
        return parse_message(message_class, payload)

    return decode


def _top_level_names(schema: str) -> list[str] | None:
    try:
        raw = base64.b64decode(schema, validate=True)
        proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
        return [m.name for m in proto.message_type]
    except (binascii.Error, ProtobufDecodeError, ValueError):
        pass
    # .proto source: top-level declarations start at a line's beginning once comments go.
    names = _TOP_LEVEL_MESSAGE.findall(re.sub(r"//[^\n]*|/\*.*?\*/", "", schema, flags=re.S))
    return names or None


def _as_dict(value: Any) -> Any:
    return json_format.MessageToDict(value, preserving_proto_field_name=True)


def _as_is(value: Any) -> Any:
    return value
