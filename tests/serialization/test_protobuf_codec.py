"""``ProtobufCodec``: generated classes through the registry wire format, message indexes
for files with several messages, and bodies that are not the message they claim."""

from __future__ import annotations

from typing import Annotated, Any

import pytest

from eventwire.core.errors import ConfigurationError, DecodeError, MessageError
from eventwire.core.message import Message
from eventwire.serialization import wire
from eventwire.serialization.codec import decoder_for
from eventwire.serialization.protobuf import PROTOBUF_CONTENT_TYPE, ProtobufCodec
from eventwire.serialization.registry import SchemaUnknownError
from eventwire.serialization.registry_file import FileSchemaRegistry
from eventwire.serialization.registry_http import HTTPSchemaRegistry

from . import orders_pb2
from .conftest import unique


def order() -> Any:  # orders_pb2 builds its classes at run time: no static type
    return orders_pb2.OrderPlaced(
        order_id="o-1", amount=250, lines=[orders_pb2.OrderPlaced.Line(sku="a", quantity=2)]
    )


@pytest.mark.registry
async def test_round_trip_through_apicurio(registry: HTTPSchemaRegistry) -> None:
    topic = unique("orders")
    codec = ProtobufCodec(orders_pb2.OrderPlaced, registry)
    message = await codec.message(order(), topic=topic)
    assert message.content_type == PROTOBUF_CONTENT_TYPE
    schema_id, indexes, _ = wire.unframe_protobuf(message.body)
    assert indexes == [1]  # OrderPlaced is the file's second message
    assert (await registry.schema_by_id(schema_id)).schema_type == "PROTOBUF"
    assert await codec.decoder_for(orders_pb2.OrderPlaced)(message) == order()
    assert await codec.decoder_for(dict)(message) == {
        "order_id": "o-1",
        "amount": "250",  # proto3 JSON mapping: int64 as a string
        "lines": [{"sku": "a", "quantity": 2}],
    }


@pytest.mark.registry
async def test_proto_source_registered_when_given(
    registry: HTTPSchemaRegistry, tmp_path: object
) -> None:
    from pathlib import Path

    proto = Path(str(tmp_path)) / "orders.proto"
    proto.write_text(orders_pb2.PROTO_SOURCE)
    topic = unique("orders")
    codec = ProtobufCodec(orders_pb2.OrderPlaced, registry, proto=proto)
    body = await codec.encode(order(), topic=topic)
    stored = await registry.schema_by_id(wire.schema_id_of(body))
    assert "message OrderPlaced" in stored.schema
    fresh = HTTPSchemaRegistry(registry.url)
    async with fresh:  # the index check reads the writer's .proto source
        assert await ProtobufCodec(orders_pb2.OrderPlaced, fresh).decode(body) == order()
        ping_reader = ProtobufCodec(orders_pb2.Ping, fresh)
        with pytest.raises(DecodeError, match="holds a OrderPlaced"):
            await ping_reader.decode(body)


async def test_first_message_uses_the_single_zero_byte(file_registry: FileSchemaRegistry) -> None:
    codec = ProtobufCodec(orders_pb2.Ping, file_registry)
    body = await codec.encode(orders_pb2.Ping(text="hi"), topic="p")
    assert body[5] == 0
    assert await codec.decode(body) == orders_pb2.Ping(text="hi")


async def test_nested_message_index(file_registry: FileSchemaRegistry) -> None:
    codec = ProtobufCodec(orders_pb2.OrderPlaced.Line, file_registry)
    assert codec.indexes == [1, 0]
    line = orders_pb2.OrderPlaced.Line(sku="x", quantity=1)
    body = await codec.encode(line, topic="l")
    assert wire.unframe_protobuf(body)[1] == [1, 0]
    assert await codec.decode(body) == line


async def test_bad_bodies(file_registry: FileSchemaRegistry) -> None:
    codec = ProtobufCodec(orders_pb2.OrderPlaced, file_registry)
    good = await codec.encode(order(), topic="t")
    schema_id = wire.schema_id_of(good)
    with pytest.raises(SchemaUnknownError):
        await codec.decode(wire.frame(55555, good[5:]))
    with pytest.raises(DecodeError, match=r"not a valid eventwire\.tests\.OrderPlaced"):
        await codec.decode(good[:-3])  # cut inside a length-delimited field
    with pytest.raises(DecodeError, match="out of range"):
        await codec.decode(wire.frame(schema_id, b"\x0a", indexes=[7]))
    with pytest.raises(DecodeError, match="holds a Ping"):
        await codec.decode(wire.frame(schema_id, b"", indexes=[0]))


async def test_payload_checks(file_registry: FileSchemaRegistry) -> None:
    codec = ProtobufCodec(orders_pb2.OrderPlaced, file_registry)
    with pytest.raises(MessageError, match=r"expected a eventwire\.tests\.OrderPlaced"):
        await codec.encode(orders_pb2.Ping(text="x"), topic="t")
    with pytest.raises(MessageError, match="does not fit"):
        await codec.encode({"nope": 1}, topic="t")
    assert await codec.decode(await codec.encode({"order_id": "d"}, topic="t")) == (
        orders_pb2.OrderPlaced(order_id="d")
    )
    with pytest.raises(ConfigurationError, match="not a generated Protobuf class"):
        ProtobufCodec(dict, file_registry)  # type: ignore[arg-type]  # not a protobuf class on purpose
    with pytest.raises(ConfigurationError, match="decodes into that class or dict"):
        codec.decoder_for(str)


async def test_annotation_picks_the_codec(file_registry: FileSchemaRegistry) -> None:
    codec = ProtobufCodec(orders_pb2.OrderPlaced, file_registry)
    body = await codec.encode(order(), topic="t")
    with_registry = decoder_for(Annotated[orders_pb2.OrderPlaced, codec])
    assert await with_registry(Message(body=body)) == order()
    # The message class alone: the wire format decoded with it, no registry consulted.
    bare = decoder_for(orders_pb2.OrderPlaced)
    assert await bare(Message(body=wire.frame(424242, order().SerializeToString(), indexes=[1])))
    with pytest.raises(DecodeError):
        await bare(Message(body=b"not framed"))
