"""``ByContentType``: one handler decoding Avro, JSON Schema and plain JSON bodies of a topic."""

from __future__ import annotations

from typing import Annotated

import pydantic
import pytest

from eventwire.core.errors import DecodeError
from eventwire.core.message import Message
from eventwire.serialization import wire
from eventwire.serialization.avro import AvroCodec
from eventwire.serialization.codec import decoder_for, encode_payload
from eventwire.serialization.json_schema import JSONSchemaCodec
from eventwire.serialization.protobuf import ProtobufCodec
from eventwire.serialization.registry import SchemaUnknownError
from eventwire.serialization.registry_file import FileSchemaRegistry
from eventwire.serialization.schema_choice import ByContentType

from . import orders_pb2


class Order(pydantic.BaseModel):
    order_id: str
    amount: int


async def test_by_header_by_registry_and_plain_json(file_registry: FileSchemaRegistry) -> None:
    avro, js = AvroCodec(Order, file_registry), JSONSchemaCodec(Order, file_registry)
    decode = decoder_for(Annotated[Order, ByContentType(avro, js)])
    want = Order(order_id="o", amount=1)
    avro_message = await avro.message(want, topic="t")
    assert await decode(avro_message) == want
    assert await decode(await js.message(want, topic="t")) == want
    # no header (a Confluent producer): the registry says the writer schema is Avro
    assert await decode(Message(body=avro_message.body)) == want
    body, content_type = encode_payload(want)
    assert await decode(Message(body=body, content_type=content_type)) == want
    with pytest.raises(DecodeError):
        await decoder_for(Annotated[Order, ByContentType(avro, json=False)])(
            Message(body=body, content_type=content_type)
        )
    with pytest.raises(SchemaUnknownError):
        await decode(Message(body=wire.frame(999, b"")))


async def test_a_type_no_codec_handles(file_registry: FileSchemaRegistry) -> None:
    proto_id = await file_registry.register(
        "p", ProtobufCodec(orders_pb2.Ping, file_registry).schema
    )
    decode = ByContentType(AvroCodec(Order, file_registry)).decoder_for(Order)
    with pytest.raises(DecodeError, match="no codec for PROTOBUF bodies"):
        await decode(Message(body=wire.frame(proto_id, b"", indexes=[0])))


def test_annotated_without_a_codec_decodes_as_the_bare_type() -> None:
    assert decoder_for(Annotated[bytes, "doc"])(Message(body=b"\xff raw")) == b"\xff raw"
    assert decoder_for(Annotated[Order, "doc"])(
        Message(body=b'{"order_id": "o", "amount": 1}')
    ) == Order(order_id="o", amount=1)
