"""``AvroCodec``: round trips through the registry wire format, evolution both ways, and every
kind of bad body ending as the right decode error."""

from __future__ import annotations

import datetime as dt
import enum
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pydantic
import pytest

from eventwire.core.errors import ConfigurationError, DecodeError, MessageError, ValidationError
from eventwire.serialization import wire
from eventwire.serialization.avro import AVRO_CONTENT_TYPE, AvroCodec
from eventwire.serialization.avro_schema import avro_schema_for
from eventwire.serialization.registry import Schema, SchemaRegistry, SchemaUnknownError
from eventwire.serialization.registry_file import FileSchemaRegistry
from eventwire.serialization.registry_http import HTTPSchemaRegistry

from .conftest import unique

if TYPE_CHECKING:
    from eventwire.core.message import Message


class Status(enum.Enum):
    NEW = "NEW"
    PAID = "PAID"


class Line(pydantic.BaseModel):
    sku: str
    quantity: int


class OrderV1(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(title="Order")

    order_id: str
    amount: int


class OrderV2(pydantic.BaseModel):  # BACKWARD-compatible: a field added with a default
    model_config = pydantic.ConfigDict(title="Order")

    order_id: str
    amount: int
    currency: str = "EUR"


class Rich(pydantic.BaseModel):
    order_id: str
    at: dt.datetime
    day: dt.date
    ref: uuid.UUID
    status: Status
    lines: list[Line]
    tags: dict[str, str]
    note: str | None = None
    score: float = 0.5
    paid: bool = False
    raw: bytes = b""


def v1_dict() -> dict[str, object]:
    return {
        "type": "record",
        "name": "Order",
        "fields": [{"name": "order_id", "type": "string"}, {"name": "amount", "type": "long"}],
    }


@pytest.fixture(params=[pytest.param("apicurio", marks=pytest.mark.registry), "file"])
async def any_registry(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SchemaRegistry]:
    if request.param == "file":
        yield FileSchemaRegistry(tmp_path / "registry.json")
        return
    async with HTTPSchemaRegistry(request.getfixturevalue("registry_url")) as client:
        yield client


async def test_round_trip_model_dict_and_file(any_registry: SchemaRegistry, tmp_path: Path) -> None:
    topic = unique("orders")
    codec = AvroCodec(OrderV1, any_registry)
    message = await codec.message(OrderV1(order_id="o-1", amount=250), topic=topic, key="c-1")
    assert message.content_type == AVRO_CONTENT_TYPE
    assert message.body[0] == 0
    schema_id = wire.schema_id_of(message.body)
    assert schema_id == await any_registry.register(f"{topic}-value", codec.schema)
    assert await codec.decoder_for(OrderV1)(message) == OrderV1(order_id="o-1", amount=250)
    assert await codec.decoder_for(dict)(message) == {"order_id": "o-1", "amount": 250}
    avsc = tmp_path / "order.avsc"
    avsc.write_text(json.dumps(v1_dict()))
    from_file = AvroCodec(avsc, any_registry)
    assert await from_file.decode(message.body) == {"order_id": "o-1", "amount": 250}
    assert AvroCodec(v1_dict(), any_registry).schema.schema == from_file.schema.schema


async def test_rich_model_types_round_trip(file_registry: FileSchemaRegistry) -> None:
    codec = AvroCodec(Rich, file_registry)
    value = Rich(
        order_id="o",
        at=dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC),
        day=dt.date(2026, 1, 2),
        ref=uuid.uuid4(),
        status=Status.PAID,
        lines=[Line(sku="a", quantity=2)],
        tags={"k": "v"},
        note=None,
        raw=b"\x00\xff",
    )
    body = await codec.encode(value, topic="rich")
    assert await codec.decoder_for(Rich)(_msg(body)) == value
    schema = avro_schema_for(Rich)
    note = next(f for f in schema["fields"] if f["name"] == "note")
    assert note == {"name": "note", "type": ["null", "string"], "default": None}


@pytest.mark.registry
async def test_evolution_old_reads_new_and_new_reads_old(registry: HTTPSchemaRegistry) -> None:
    topic = unique("orders")
    await registry.set_compatibility_level(f"{topic}-value", "BACKWARD")
    old, new = AvroCodec(OrderV1, registry), AvroCodec(OrderV2, registry)
    old_body = await old.encode(OrderV1(order_id="a", amount=1), topic=topic)
    new_body = await new.encode(OrderV2(order_id="b", amount=2, currency="USD"), topic=topic)
    assert wire.schema_id_of(old_body) != wire.schema_id_of(new_body)
    # a consumer on the new schema reads old messages (the default fills the new field)...
    assert await new.decoder_for(OrderV2)(_msg(old_body)) == OrderV2(order_id="a", amount=1)
    # ...and a consumer still on the old schema reads new ones (the extra field is skipped).
    assert await old.decoder_for(OrderV1)(_msg(new_body)) == OrderV1(order_id="b", amount=2)


async def test_unresolvable_reader_is_decode_error(file_registry: FileSchemaRegistry) -> None:
    await file_registry.set_compatibility_level("w-value", "NONE")
    writer = AvroCodec(
        {"type": "record", "name": "Order", "fields": [{"name": "order_id", "type": "long"}]},
        file_registry,
    )
    body = await writer.encode({"order_id": 5}, topic="w")
    reader = AvroCodec(OrderV1, file_registry)
    with pytest.raises(DecodeError, match="cannot resolve writer schema") as err:
        await reader.decode(body)
    assert err.value.reason == "decode-error"


async def test_bad_bodies_are_the_right_errors(file_registry: FileSchemaRegistry) -> None:
    codec = AvroCodec(OrderV1, file_registry)
    good = await codec.encode(OrderV1(order_id="order-1", amount=7), topic="t")
    schema_id = wire.schema_id_of(good)
    cases: list[tuple[bytes, type[Exception], str]] = [
        (b"\x01" + good[1:], DecodeError, "magic byte"),
        (good[:3], DecodeError, "shorter than"),
        (good[:-1], DecodeError, "does not decode"),
        (good + b"\x00", DecodeError, "left over"),
        (wire.frame(schema_id, b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"), DecodeError, "decode"),
        (wire.frame(987654, good[5:]), SchemaUnknownError, "987654"),
    ]
    for body, kind, says in cases:
        with pytest.raises(kind, match=says) as err:
            await codec.decode(body)
        assert type(err.value) is kind
    assert SchemaUnknownError.reason == "schema-unknown"


async def test_validation_error_when_model_refuses(file_registry: FileSchemaRegistry) -> None:
    class Strict(pydantic.BaseModel):
        order_id: str
        amount: pydantic.PositiveInt

    codec = AvroCodec(OrderV1, file_registry)
    body = await codec.encode({"order_id": "x", "amount": -3}, topic="t")
    with pytest.raises(ValidationError) as err:
        await codec.decoder_for(Strict)(_msg(body))
    assert err.value.reason == "validation-error"


async def test_schema_of_another_type_is_decode_error(file_registry: FileSchemaRegistry) -> None:
    json_id = await file_registry.register("j", Schema(schema="{}", schema_type="JSON"))
    with pytest.raises(DecodeError, match="is a JSON schema"):
        await AvroCodec(OrderV1, file_registry).decode(wire.frame(json_id, b"{}"))


async def test_payload_that_does_not_fit_is_not_sent(file_registry: FileSchemaRegistry) -> None:
    codec = AvroCodec(OrderV1, file_registry)
    with pytest.raises(MessageError, match="does not fit"):
        await codec.encode({"order_id": "x", "amount": "ten"}, topic="t")
    with pytest.raises(MessageError, match="does not fit"):
        await codec.encode({"order_id": "x", "amount": 1, "extra": 1}, topic="t")


async def test_auto_register_off_needs_a_registered_schema(
    file_registry: FileSchemaRegistry,
) -> None:
    codec = AvroCodec(OrderV1, file_registry, auto_register=False)
    with pytest.raises(MessageError, match="not registered under subject 't-value'"):
        await codec.encode(OrderV1(order_id="x", amount=1), topic="t")
    await file_registry.register("t-value", codec.schema)
    assert await codec.encode(OrderV1(order_id="x", amount=1), topic="t")


def test_bad_schemas_are_configuration_errors(tmp_path: Path) -> None:
    registry = FileSchemaRegistry(tmp_path / "r.json")
    with pytest.raises(ConfigurationError, match="not a valid Avro schema"):
        AvroCodec({"type": "record", "fields": []}, registry)
    with pytest.raises(ConfigurationError, match="cannot read Avro schema file"):
        AvroCodec(tmp_path / "missing.avsc", registry)

    class Odd(pydantic.BaseModel):
        value: complex

    with pytest.raises(ConfigurationError, match="no Avro type"):
        AvroCodec(Odd, registry)


def _msg(body: bytes) -> Message:
    from eventwire.core.message import Message

    return Message(body=body)
