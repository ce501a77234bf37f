"""Benchmark: encode+decode cost per message of the schema codecs next to JSON.

The message is the harness's ~200-byte order. Each codec runs through eventwire (the
Confluent wire format, the schema id cached after the first call, decoding into a pydantic
model or the Protobuf class) and, for the ratio, through its raw library doing the same
work without eventwire (fastavro, protobuf, jsonschema + orjson, pydantic for JSON). With
confluent-kafka installed its serializers are measured too. No registry I/O is timed: ids
are cached after the first message, as in a running service.

    .venv/bin/python benchmarks/bench_codecs.py [--messages N]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import fastavro
import jsonschema
import orjson
import pydantic
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from eventwire.core.message import Message
from eventwire.serialization.avro import AvroCodec
from eventwire.serialization.avro_schema import avro_schema_for
from eventwire.serialization.codec import decoder_for, encode_payload
from eventwire.serialization.json_schema import JSONSchemaCodec
from eventwire.serialization.protobuf import ProtobufCodec
from eventwire.serialization.registry_file import FileSchemaRegistry


class Order(pydantic.BaseModel):
    order_id: str
    customer: str
    amount: float
    items: int
    currency: str
    sent_ns: int
    note: str


ORDER = Order(
    order_id="ord-00000001",
    customer="c-1234",
    amount=1234.5,
    items=3,
    currency="EUR",
    sent_ns=1_700_000_000_000_000_000,
    note="x" * 60,
)


def order_class() -> Any:
    """The same order as a Protobuf message (built as generated code builds it)."""
    f = descriptor_pb2.FileDescriptorProto(
        name="bench/order.proto", package="bench", syntax="proto3"
    )
    m = f.message_type.add(name="Order")
    for number, (name, kind) in enumerate(
        [("order_id", 9), ("customer", 9), ("amount", 1), ("items", 3), ("currency", 9),
         ("sent_ns", 3), ("note", 9)],
        1,
    ):  # fmt: skip
        m.field.add(name=name, number=number, type=kind, label=1)
    pool = descriptor_pool.Default()
    pool.AddSerializedFile(f.SerializeToString())
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("bench.Order"))


def per_message_us(work: Callable[[], object], count: int) -> float:
    for _ in range(min(count, 1000)):  # warm caches
        work()
    started = time.perf_counter()
    for _ in range(count):
        work()
    return (time.perf_counter() - started) / count * 1e6


def per_message_us_async(work: Callable[[], Awaitable[object]], count: int) -> float:
    """Like ``per_message_us``, all inside one running loop, as a consumer awaits decoders."""

    async def go() -> float:
        for _ in range(min(count, 1000)):
            await work()
        started = time.perf_counter()
        for _ in range(count):
            await work()
        return (time.perf_counter() - started) / count * 1e6

    return asyncio.run(go())


def delivered(body: bytes) -> Message:
    # Fixed id and time: a delivered message has them already; minting them is not decoding.
    return Message(body=body, id="bench", timestamp=0.0)


def eventwire_cases(
    registry: FileSchemaRegistry, proto_cls: Any
) -> dict[str, Callable[[], Awaitable[Any]]]:
    avro = AvroCodec(Order, registry)
    proto = ProtobufCodec(proto_cls, registry)
    json_schema = JSONSchemaCodec(Order, registry)
    proto_value = proto_cls(**ORDER.model_dump())
    json_decode = decoder_for(Order)
    avro_decode, proto_decode = avro.decoder_for(Order), proto.decoder_for(proto_cls)
    js_decode = json_schema.decoder_for(Order)

    def run(codec: Any, decode: Any, value: Any) -> Callable[[], Awaitable[Any]]:
        async def round_trip() -> Any:
            body = await codec.encode(value, topic="bench")
            return await decode(delivered(body))

        return round_trip

    async def json_case() -> Any:
        body, _ = encode_payload(ORDER)
        return json_decode(delivered(body))

    return {
        "json (pydantic)": json_case,
        "avro": run(avro, avro_decode, ORDER),
        "protobuf": run(proto, proto_decode, proto_value),
        "json-schema": run(json_schema, js_decode, ORDER),
    }


def raw_cases(proto_cls: Any) -> dict[str, Callable[[], Any]]:
    parsed = fastavro.parse_schema(avro_schema_for(Order))
    validator = jsonschema.validators.validator_for(Order.model_json_schema())(
        Order.model_json_schema()
    )
    proto_value = proto_cls(**ORDER.model_dump())

    def avro() -> Any:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, ORDER.model_dump())
        out.seek(0)
        return Order.model_validate(fastavro.schemaless_reader(out, parsed, parsed))

    def json_schema() -> Any:
        value = ORDER.model_dump(mode="json")
        validator.validate(value)
        decoded = orjson.loads(orjson.dumps(value))
        validator.validate(decoded)
        return Order.model_validate(decoded)

    return {
        "json (pydantic)": lambda: Order.model_validate_json(ORDER.model_dump_json()),
        "avro": avro,
        "protobuf": lambda: proto_cls.FromString(proto_value.SerializeToString()),
        "json-schema": json_schema,
    }


def confluent_cases(proto_cls: Any) -> dict[str, Callable[[], Any]]:
    """Confluent's own serializers on a mock registry (in-process), when installed."""
    try:
        from confluent_kafka.schema_registry import Schema
        from confluent_kafka.schema_registry._sync.mock_schema_registry_client import (
            MockSchemaRegistryClient,
        )
        from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
        from confluent_kafka.schema_registry.protobuf import (
            ProtobufDeserializer,
            ProtobufSerializer,
        )
        from confluent_kafka.serialization import MessageField, SerializationContext
    except ImportError:
        return {}
    client = MockSchemaRegistryClient({"url": "mock://bench"})
    ctx = SerializationContext("bench", MessageField.VALUE)
    avro_text = orjson.dumps(avro_schema_for(Order)).decode()
    client.register_schema("bench-value", Schema(avro_text, "AVRO"))
    a_ser, a_de = AvroSerializer(client, avro_text), AvroDeserializer(client, avro_text)
    conf = {"use.deprecated.format": False}
    p_ser, p_de = ProtobufSerializer(proto_cls, client, conf), ProtobufDeserializer(proto_cls, conf)
    proto_value = proto_cls(**ORDER.model_dump())
    return {
        "avro": lambda: a_de(a_ser(ORDER.model_dump(), ctx), ctx),
        "protobuf": lambda: p_de(p_ser(proto_value, ctx), ctx),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    count = parser.parse_args().messages
    proto_cls = order_class()
    with tempfile.TemporaryDirectory() as tmp:
        registry = FileSchemaRegistry(Path(tmp) / "schemas.json")
        cases = eventwire_cases(registry, proto_cls)
        ours = {k: per_message_us_async(v, count) for k, v in cases.items()}
    raw = {k: per_message_us(v, count) for k, v in raw_cases(proto_cls).items()}
    confluent = {k: per_message_us(v, count) for k, v in confluent_cases(proto_cls).items()}
    json_us = ours["json (pydantic)"]
    print(f"encode+decode per message, {count:,} messages, ~200-byte order (microseconds)")
    print(f"{'codec':18} {'eventwire':>10} {'raw lib':>9} {'ew/raw':>7} {'vs json':>8} "
          f"{'confluent':>10}")  # fmt: skip
    for name, us in ours.items():
        theirs = confluent.get(name)
        print(
            f"{name:18} {us:10.2f} {raw[name]:9.2f} {us / raw[name]:7.2f} {us / json_us:8.2f} "
            + (f"{theirs:10.2f}" if theirs is not None else f"{'-':>10}")
        )


if __name__ == "__main__":
    main()
