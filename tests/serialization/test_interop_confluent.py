"""Interop with Confluent's own Python serializers (confluent-kafka, a dev-only dependency):
bytes they write decode in eventwire, and bytes eventwire writes decode in theirs, with both
sides talking to the same real Apicurio registry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pydantic
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from eventwire.serialization.avro import AvroCodec
from eventwire.serialization.json_schema import JSONSchemaCodec
from eventwire.serialization.protobuf import ProtobufCodec
from eventwire.serialization.registry_http import HTTPSchemaRegistry

from . import orders_pb2
from .conftest import unique

pytestmark = pytest.mark.registry


class Order(pydantic.BaseModel):
    order_id: str
    amount: int
    note: str | None = None


AVRO = json.dumps(
    {
        "type": "record",
        "name": "Order",
        "fields": [
            {"name": "order_id", "type": "string"},
            {"name": "amount", "type": "long"},
            {"name": "note", "type": ["null", "string"], "default": None},
        ],
    }
)
JSON_SCHEMA = json.dumps(
    {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Order",
        "type": "object",
        "properties": {"order_id": {"type": "string"}, "amount": {"type": "integer"}},
        "required": ["order_id", "amount"],
    }
)


@pytest.fixture
def confluent(registry_url: str) -> Iterator[SchemaRegistryClient]:
    # A timeout, so a registry that stops answering fails the test instead of hanging it.
    with SchemaRegistryClient({"url": registry_url, "timeout": 20}) as client:
        yield client


def ctx(topic: str) -> SerializationContext:
    return SerializationContext(topic, MessageField.VALUE)


async def test_avro_both_ways(
    confluent: SchemaRegistryClient, registry: HTTPSchemaRegistry
) -> None:
    topic = unique("interop-avro")
    value: dict[str, Any] = {"order_id": "o-1", "amount": 12, "note": "hi"}
    theirs = AvroSerializer(confluent, AVRO)(value, ctx(topic))
    ours = AvroCodec(json.loads(AVRO), registry)
    assert await ours.decoder_for(Order)(_msg(theirs)) == Order(**value)
    body = await ours.encode(Order(order_id="o-2", amount=5), topic=unique("interop-avro"))
    assert AvroDeserializer(confluent)(body, ctx(topic)) == {
        "order_id": "o-2",
        "amount": 5,
        "note": None,
    }


async def test_protobuf_both_ways(
    confluent: SchemaRegistryClient, registry: HTTPSchemaRegistry
) -> None:
    topic = unique("interop-proto")
    order = orders_pb2.OrderPlaced(order_id="o-1", amount=3)
    serializer = ProtobufSerializer(
        orders_pb2.OrderPlaced, confluent, {"use.deprecated.format": False}
    )
    theirs = serializer(order, ctx(topic))
    ours = ProtobufCodec(orders_pb2.OrderPlaced, registry)
    assert await ours.decode(theirs) == order
    body = await ours.encode(order, topic=unique("interop-proto"))
    assert body == theirs[:1] + body[1:5] + theirs[5:]  # same framing, index array and payload
    deserializer = ProtobufDeserializer(orders_pb2.OrderPlaced, {"use.deprecated.format": False})
    assert deserializer(body, ctx(topic)) == order
    line = orders_pb2.OrderPlaced.Line(sku="s", quantity=2)  # nested: index array [1, 0]
    nested = ProtobufSerializer(
        orders_pb2.OrderPlaced.Line, confluent, {"use.deprecated.format": False}
    )(line, ctx(unique("interop-proto")))
    assert await ProtobufCodec(orders_pb2.OrderPlaced.Line, registry).decode(nested) == line


async def test_json_schema_both_ways(
    confluent: SchemaRegistryClient, registry: HTTPSchemaRegistry
) -> None:
    topic = unique("interop-json")
    value = {"order_id": "o-1", "amount": 7}
    theirs = JSONSerializer(JSON_SCHEMA, confluent)(value, ctx(topic))
    ours = JSONSchemaCodec(json.loads(JSON_SCHEMA), registry)
    assert await ours.decode(theirs) == value
    body = await ours.encode(value, topic=unique("interop-json"))
    assert (
        JSONDeserializer(JSON_SCHEMA, schema_registry_client=confluent)(body, ctx(topic)) == value
    )


def _msg(body: bytes) -> Any:
    from eventwire.core.message import Message

    return Message(body=body)
