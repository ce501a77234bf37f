"""Avro, Protobuf and JSON Schema messages through the registry wire format on the network
brokers (RabbitMQ, Redis Streams, NATS JetStream, Kafka) through the public App API, with the
shared Apicurio registry; every queue, key, stream and topic made is deleted afterwards."""

# No ``from __future__ import annotations``: handler annotations name test-local codecs.
import asyncio
import contextlib
import re
import uuid
from pathlib import Path
from typing import Annotated, Any

import pytest

from eventwire.core.contract import Broker
from eventwire.runtime.app import App
from eventwire.serialization.registry_http import HTTPSchemaRegistry
from eventwire.testing.services import service_url
from runtime.helpers import running, wait_until
from setup.setup_helpers import purge

from .test_schema_apps import make_codec, payload

KINDS = ("avro", "protobuf", "json-schema")
COUNT = 10


async def delete_kafka_topics(url: str, used: Broker | None) -> None:
    """Delete the topics the App's Kafka client created (the shared Kafka never auto-creates)."""
    from eventwire.brokers.catalog import open_broker
    from eventwire.brokers.kafka.broker import KafkaBroker

    if used is None:
        return
    assert isinstance(used, KafkaBroker)
    admin = open_broker(url)
    assert isinstance(admin, KafkaBroker)
    try:
        await asyncio.wait_for(admin.delete_topics(used.created_topics), 30)
    finally:
        await admin.aclose()


@pytest.mark.integration
@pytest.mark.parametrize(
    "broker",
    [
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("nats", marks=pytest.mark.nats),
        pytest.param("kafka", marks=pytest.mark.kafka),
    ],
)
@pytest.mark.registry
async def test_every_codec_round_trips_on_the_broker(
    broker: str, registry: HTTPSchemaRegistry, tmp_path: Path
) -> None:
    token = f"e2e_{broker}_schema{uuid.uuid4().hex[:8]}"  # the setup purge's naming rule
    topics = {kind: f"{token}.{kind}" for kind in KINDS}
    group = f"{token}-g"
    url = service_url(broker)
    if broker == "rabbitmq":
        # Its own exchange: the delay levels of the shared "eventwire" one serve other runs.
        url = f"{url}{'&' if '?' in url else '?'}exchange={token}"
    got: dict[str, list[Any]] = {kind: [] for kind in KINDS}
    app = App(url, name=token)
    opened: Broker | None = None
    codecs = {}
    for kind in KINDS:
        codec, target = make_codec(kind, registry)
        codecs[kind] = codec

        def handler(kind: str, target: Any, codec: Any) -> Any:
            async def handle(value: Annotated[target, codec]) -> None:
                got[kind].append(value)

            handle.__qualname__ = f"handle_{kind}"
            return handle

        app.subscriber(topics[kind], group=group)(handler(kind, target, codec))
    removed = contextlib.AsyncExitStack()
    if broker == "rabbitmq":
        from brokers.rabbitmq.rabbitmq_support import topology_removed

        await removed.enter_async_context(topology_removed(token))
    try:
        async with app, running(app):
            opened = app.broker
            for kind in KINDS:
                for n in range(COUNT):
                    message = await codecs[kind].message(payload(kind, n), topic=topics[kind])
                    await app.publish(topics[kind], message)
            await wait_until(lambda: all(len(v) == COUNT for v in got.values()), deadline=60)
        for kind in KINDS:
            assert sorted(got[kind], key=lambda o: o.amount) == [
                payload(kind, n) for n in range(COUNT)
            ]
        assert app.stats.dead_lettered == 0
    finally:
        await asyncio.wait_for(removed.aclose(), 30)  # RabbitMQ: queues, delay levels, exchange
        if broker == "kafka":
            await delete_kafka_topics(url, opened)
        elif broker != "rabbitmq":
            await asyncio.wait_for(purge(broker, url, re.compile(re.escape(token)), set()), 30)
