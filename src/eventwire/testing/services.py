"""Testing layer: where the shared test services are, read from one place (the environment).

``scripts/services.sh up`` starts each of these on its usual loopback port; a test that needs
one asks here for its address instead of writing it down, so pointing the whole suite at other
servers is a matter of environment variables::

    EVENTWIRE_TEST_REDIS_URL=redis://10.0.0.5:6379/0 bash scripts/test.sh
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    """One shared service: its name (also its pytest marker, where it has one) and address."""

    name: str
    env: str
    default: str

    @property
    def url(self) -> str:
        return os.environ.get(self.env) or self.default

    @property
    def host_port(self) -> tuple[str, int]:
        """The first host and port of the URL (Kafka's may list several)."""
        first = urlsplit(self.url).netloc.rsplit("@", 1)[-1].split(",")[0]
        host, _, port = first.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)


SERVICES: Final = {
    s.name: s
    for s in (
        Service(
            name="rabbitmq",
            env="EVENTWIRE_TEST_RABBITMQ_URL",
            default="amqp://guest:guest@127.0.0.1:5672/",
        ),
        Service(name="redis", env="EVENTWIRE_TEST_REDIS_URL", default="redis://127.0.0.1:6379/0"),
        Service(name="nats", env="EVENTWIRE_TEST_NATS_URL", default="nats://127.0.0.1:4222"),
        Service(
            name="postgresql",
            env="EVENTWIRE_TEST_POSTGRES_URL",
            default="postgresql://postgres@127.0.0.1:5432/test",
        ),
        Service(name="kafka", env="EVENTWIRE_TEST_KAFKA_URL", default="kafka://127.0.0.1:9092"),
        Service(
            name="registry",
            env="EVENTWIRE_TEST_REGISTRY_URL",
            default="http://127.0.0.1:8081/apis/ccompat/v7",
        ),
    )
}


def service_url(name: str) -> str:
    """The URL of the shared service ``name`` ("rabbitmq", "redis", "nats", "kafka", ...)."""
    return SERVICES[name].url


def unreachable_reason(name: str, timeout: float = 2.0) -> str | None:
    """None when ``name``'s port accepts a connection, else one line saying what to do."""
    service = SERVICES[name]
    host, port = service.host_port
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return (
            f"{name} is not reachable at {host}:{port} ({exc.strerror or exc}): "
            f"run `bash scripts/services.sh up`, or set {service.env}"
        )
