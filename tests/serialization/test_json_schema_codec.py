"""``JSONSchemaCodec``: validated JSON in the Confluent wire format, checked against the
writer's registered schema on the way in."""

from __future__ import annotations

import pydantic
import pytest

from eventwire.core.errors import ConfigurationError, DecodeError, MessageError, ValidationError
from eventwire.core.message import Message
from eventwire.serialization import wire
from eventwire.serialization.json_schema import JSON_SCHEMA_CONTENT_TYPE, JSONSchemaCodec
from eventwire.serialization.registry import SchemaUnknownError
from eventwire.serialization.registry_file import FileSchemaRegistry
from eventwire.serialization.registry_http import HTTPSchemaRegistry

from .conftest import unique

SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Order",
    "type": "object",
    "properties": {"order_id": {"type": "string"}, "amount": {"type": "integer", "minimum": 0}},
    "required": ["order_id", "amount"],
}


class Order(pydantic.BaseModel):
    order_id: str
    amount: int


@pytest.mark.registry
async def test_round_trip_through_apicurio(registry: HTTPSchemaRegistry) -> None:
    topic = unique("orders")
    codec = JSONSchemaCodec(SCHEMA, registry)
    message = await codec.message({"order_id": "o-1", "amount": 3}, topic=topic)
    assert message.content_type == JSON_SCHEMA_CONTENT_TYPE
    assert message.body[5:] == b'{"order_id":"o-1","amount":3}'
    assert (await registry.schema_by_id(wire.schema_id_of(message.body))).schema_type == "JSON"
    assert await codec.decoder_for(Order)(message) == Order(order_id="o-1", amount=3)
    from_model = JSONSchemaCodec(Order, registry)
    assert await from_model.decode(
        await from_model.encode(Order(order_id="m", amount=1), topic=topic)
    )


async def test_invalid_payload_is_not_sent(file_registry: FileSchemaRegistry) -> None:
    codec = JSONSchemaCodec(SCHEMA, file_registry)
    with pytest.raises(MessageError, match="at amount: -1 is less than the minimum of 0"):
        await codec.encode({"order_id": "x", "amount": -1}, topic="t")
    with pytest.raises(MessageError, match="'amount' is a required property"):
        await codec.encode({"order_id": "x"}, topic="t")


async def test_bodies_checked_against_the_writers_schema(file_registry: FileSchemaRegistry) -> None:
    codec = JSONSchemaCodec(SCHEMA, file_registry)
    good = await codec.encode({"order_id": "x", "amount": 1}, topic="t")
    schema_id = wire.schema_id_of(good)
    with pytest.raises(ValidationError, match=r"writer schema .*required property") as err:
        await codec.decode(wire.frame(schema_id, b'{"order_id": "x"}'))
    assert err.value.reason == "validation-error"
    with pytest.raises(DecodeError, match="not valid JSON"):
        await codec.decode(wire.frame(schema_id, b'{"order_id": '))
    with pytest.raises(SchemaUnknownError):
        await codec.decode(wire.frame(31337, b"{}"))
    with pytest.raises(ValidationError):
        await codec.decoder_for(Order)(
            Message(body=wire.frame(schema_id, b'{"order_id": "x", "amount": 1.5}'))
        )


def test_bad_schema(file_registry: FileSchemaRegistry) -> None:
    with pytest.raises(ConfigurationError, match="not a valid JSON Schema"):
        JSONSchemaCodec({"type": "no-such-type"}, file_registry)
