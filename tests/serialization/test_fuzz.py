"""Every schema decoder, fed any bytes: a value or eventwire's decode error, nothing else.

Bodies are random, or valid frames with random payloads after a real schema id (the
"valid id with other bytes" case), or valid bodies cut short.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventwire.core.errors import DecodeError
from eventwire.core.message import Message
from eventwire.serialization import wire
from eventwire.serialization.avro import AvroCodec
from eventwire.serialization.json_schema import JSONSchemaCodec
from eventwire.serialization.protobuf import ProtobufCodec
from eventwire.serialization.registry_file import FileSchemaRegistry
from eventwire.serialization.schema_codec import SchemaCodec

from . import orders_pb2


class Order(pydantic.BaseModel):
    order_id: str
    amount: int
    tags: list[str] = []
    note: str | None = None


def codecs(path: Path) -> dict[str, tuple[SchemaCodec[Any], Any, object]]:
    registry = FileSchemaRegistry(path)
    return {
        "avro": (AvroCodec(Order, registry), Order(order_id="o", amount=1, tags=["a"]), Order),
        "protobuf": (
            ProtobufCodec(orders_pb2.OrderPlaced, registry),
            orders_pb2.OrderPlaced(order_id="o", amount=1),
            orders_pb2.OrderPlaced,
        ),
        "json-schema": (
            JSONSchemaCodec(Order, registry),
            Order(order_id="o", amount=1),
            Order,
        ),
    }


@pytest.mark.parametrize("kind", ["avro", "protobuf", "json-schema"])
def test_any_bytes_decode_or_decode_error(kind: str, tmp_path: Path) -> None:
    codec, sample, target = codecs(tmp_path / "r.json")[kind]
    loop = asyncio.new_event_loop()
    try:
        good = loop.run_until_complete(codec.encode(sample, topic="fuzz"))
        schema_id = wire.schema_id_of(good)
        header = good[: len(good) - len(sample_payload(codec, sample))]
        decode = codec.decoder_for(target)
        bodies = st.one_of(
            st.binary(max_size=200),
            st.binary(max_size=200).map(lambda b: wire.frame(schema_id, b)),
            st.binary(max_size=200).map(lambda b: header + b),
            st.integers(0, len(good)).map(lambda n: good[:n]),
            st.binary(max_size=8).map(lambda b: wire.frame(schema_id, b"", indexes=[0]) + b),
        )

        @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
        @given(bodies)
        def check(body: bytes) -> None:
            # SchemaUnknownError and ValidationError are DecodeErrors too.
            with contextlib.suppress(DecodeError):
                loop.run_until_complete(decode(Message(body=body)))

        check()
    finally:
        loop.close()


def sample_payload(codec: SchemaCodec[Any], sample: Any) -> bytes:
    return codec._serialize(sample)
