"""Schema codecs inside a running ``App``: round trips on the embedded brokers, hostile bodies
dead-lettered with their reason and original bytes, and a registry outage that is waited out
(readiness false) instead of dead-lettering anything."""

# No ``from __future__ import annotations``: the handlers' ``Annotated[T, codec]`` names
# codecs local to each test, so the annotations must be evaluated where they are written.
from pathlib import Path
from typing import Annotated, Any

import pydantic
import pytest

from eventwire.core import headers as h
from eventwire.core.message import Message
from eventwire.runtime.app import App
from eventwire.serialization import wire
from eventwire.serialization.avro import AvroCodec
from eventwire.serialization.json_schema import JSONSchemaCodec
from eventwire.serialization.protobuf import ProtobufCodec
from eventwire.serialization.registry_http import HTTPSchemaRegistry
from eventwire.serialization.schema_codec import SchemaCodec
from eventwire.testing.fault_proxy import FaultProxy
from eventwire.testing.services import SERVICES
from runtime.helpers import broker_url, read_dlq, running, wait_until

from . import orders_pb2
from .conftest import unique

pytestmark = pytest.mark.registry


class Order(pydantic.BaseModel):
    order_id: str
    amount: int


def make_codec(kind: str, registry: HTTPSchemaRegistry) -> tuple[SchemaCodec[Any], Any]:
    """The codec and the handler's annotation target for ``kind``."""
    if kind == "avro":
        return AvroCodec(Order, registry), Order
    if kind == "json-schema":
        return JSONSchemaCodec(Order, registry), Order
    return ProtobufCodec(orders_pb2.OrderPlaced, registry), orders_pb2.OrderPlaced


def payload(kind: str, n: int) -> Any:
    if kind == "protobuf":
        return orders_pb2.OrderPlaced(order_id=f"o-{n}", amount=n)
    return Order(order_id=f"o-{n}", amount=n)


@pytest.mark.parametrize("kind", ["avro", "protobuf", "json-schema"])
@pytest.mark.parametrize("broker", ["memory", "sqlite"])
async def test_round_trip_on_embedded_brokers(
    kind: str, broker: str, registry: HTTPSchemaRegistry, tmp_path: Path
) -> None:
    topic = unique("orders")
    codec, target = make_codec(kind, registry)
    got: list[Any] = []
    app = App(broker_url(broker, tmp_path))

    @app.subscriber(topic, group="billing")
    async def handle(order: Annotated[target, codec]) -> None:  # type: ignore[valid-type]  # the model class is a parameter: a run-time annotation mypy cannot read
        got.append(order)

    async with app, running(app):
        for n in range(20):
            await app.publish(topic, await codec.message(payload(kind, n), topic=topic))
        await wait_until(lambda: len(got) == 20)
    assert sorted(got, key=lambda o: o.amount) == [payload(kind, n) for n in range(20)]
    assert app.stats.dead_lettered == 0


@pytest.mark.parametrize("kind", ["avro", "json-schema", "protobuf"])
async def test_hostile_bodies_are_dead_lettered_with_reason_and_bytes(
    kind: str, registry: HTTPSchemaRegistry, tmp_path: Path
) -> None:
    topic = unique("orders")
    codec, target = make_codec(kind, registry)
    good = await codec.encode(payload(kind, 1), topic=topic)
    unknown = 2**31 - 11
    other = b"\x0a\xff\xff" if kind == "protobuf" else b"\x07\x07\x07 not this schema"
    header = good[:5] + (wire.encode_indexes([1]) if kind == "protobuf" else b"")
    hostile = {
        "wrong-magic": (b"\x01" + good[1:], "decode-error"),
        "unknown-id": (wire.frame(unknown, good[5:]), "schema-unknown"),
        "truncated": (good[:3], "decode-error"),
        "valid-id-other-bytes": (header + other, "decode-error"),
        # cut inside a field (a Protobuf body cut between fields is a valid, shorter message)
        "cut-payload": (good[:-3], "decode-error"),
    }
    got: list[Any] = []
    app = App(broker_url("memory", tmp_path))

    @app.subscriber(topic, group="g")
    async def handle(order: Annotated[target, codec]) -> None:  # type: ignore[valid-type]  # the model class is a parameter: a run-time annotation mypy cannot read
        got.append(order)

    async with app, running(app):
        for body, _ in hostile.values():
            await app.publish(topic, Message(body=body, content_type=codec.content_type))
        await app.publish(topic, Message(body=good, content_type=codec.content_type))
        await wait_until(lambda: len(got) == 1 and app.stats.dead_lettered == len(hostile))
        dead = await read_dlq(app.broker, topic, len(hostile))
    by_body = {m.body: m for m in dead}
    for name, (body, reason) in hostile.items():
        assert body in by_body, f"{name} not in the DLQ"
        assert by_body[body].headers[h.DLQ_REASON] == reason, name
    assert got == [payload(kind, 1)]  # the consumer kept going after every bad body


async def test_registry_outage_is_waited_out_not_dead_lettered(
    registry: HTTPSchemaRegistry, tmp_path: Path
) -> None:
    topic = unique("orders")
    producer = AvroCodec(Order, registry)
    body = await producer.encode(Order(order_id="o-1", amount=1), topic=topic)
    host, port = SERVICES["registry"].host_port
    path = registry.url.split(f":{port}", 1)[1]
    async with FaultProxy(host, port) as proxy:
        proxy.refuse()  # the registry is down before the consumer ever fetched the schema
        flaky = HTTPSchemaRegistry(f"http://{proxy.host}:{proxy.port}{path}", retries=0, timeout=1)
        consumer = AvroCodec(Order, flaky)
        got: list[Order] = []
        app = App(broker_url("sqlite", tmp_path))

        @app.subscriber(topic, group="g")
        async def handle(order: Annotated[Order, consumer]) -> None:
            got.append(order)

        async with flaky, app, running(app):
            await app.publish(topic, Message(body=body, content_type=consumer.content_type))
            await wait_until(lambda: not app.ready)  # blocked on the registry: not ready
            assert got == []
            assert app.stats.dead_lettered == 0
            proxy.heal()
            await wait_until(lambda: len(got) == 1 and app.ready)
        assert got == [Order(order_id="o-1", amount=1)]
        assert app.stats.dead_lettered == 0
        assert app.stats.processed == 1


async def test_stop_while_waiting_for_the_registry_returns_the_delivery(
    registry: HTTPSchemaRegistry, tmp_path: Path
) -> None:
    topic = unique("orders")
    body = await AvroCodec(Order, registry).encode(Order(order_id="o", amount=2), topic=topic)
    url = broker_url("sqlite", tmp_path)
    async with FaultProxy(*SERVICES["registry"].host_port) as proxy:
        proxy.refuse()
        path = registry.url.split(f":{SERVICES['registry'].host_port[1]}", 1)[1]
        flaky = HTTPSchemaRegistry(f"http://{proxy.host}:{proxy.port}{path}", retries=0, timeout=1)
        app = App(url, shutdown_timeout=2)

        @app.subscriber(topic, group="g")
        async def handle(order: Annotated[Order, AvroCodec(Order, flaky)]) -> None:
            raise AssertionError("must not be called while the registry is down")

        async with flaky, app, running(app):
            await app.publish(topic, Message(body=body))
            await wait_until(lambda: not app.ready)
        # stopped: the message went back to the broker, not to the DLQ
    got: list[Order] = []
    again = App(url)

    @again.subscriber(topic, group="g")
    async def handle_again(order: Annotated[Order, AvroCodec(Order, registry)]) -> None:
        got.append(order)

    async with again, running(again):
        await wait_until(lambda: len(got) == 1)
    assert got == [Order(order_id="o", amount=2)]
    assert again.stats.dead_lettered == 0
