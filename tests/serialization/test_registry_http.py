"""``HTTPSchemaRegistry`` against the real Apicurio registry (ccompat v7), plus a scripted
local HTTP server for what Apicurio cannot be made to do (fail, demand credentials)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from eventwire.core.errors import ConfigurationError
from eventwire.serialization.registry import (
    RegistryError,
    RegistryUnavailableError,
    Schema,
    SchemaNotFoundError,
    open_registry,
)
from eventwire.serialization.registry_http import HTTPSchemaRegistry

from .conftest import unique

V1 = Schema(
    schema=json.dumps(
        {"type": "record", "name": "Order", "fields": [{"name": "id", "type": "string"}]}
    )
)
V2 = Schema(
    schema=json.dumps(
        {
            "type": "record",
            "name": "Order",
            "fields": [
                {"name": "id", "type": "string"},
                {"name": "note", "type": "string", "default": ""},
            ],
        }
    )
)
BAD = Schema(
    schema=json.dumps(
        {"type": "record", "name": "Order", "fields": [{"name": "id", "type": "long"}]}
    )
)


@pytest.mark.registry
async def test_register_lookup_versions_and_ids(registry: HTTPSchemaRegistry) -> None:
    subject = unique()
    first = await registry.register(subject, V1)
    assert await registry.register(subject, V1) == first  # same schema: same id
    second = await registry.register(subject, V2)
    assert second != first
    assert await registry.versions(subject) == [1, 2]
    assert subject in await registry.subjects()
    latest = await registry.version(subject, "latest")
    assert (latest.version, latest.schema_id) == (2, second)
    assert json.loads((await registry.version(subject, 1)).schema.schema) == json.loads(V1.schema)
    assert (await registry.lookup(subject, V1)).version == 1
    fresh = HTTPSchemaRegistry(registry.url)  # no cache: the id really resolves on the server
    async with fresh:
        assert json.loads((await fresh.schema_by_id(first)).schema) == json.loads(V1.schema)


@pytest.mark.registry
async def test_not_found_is_its_own_error(registry: HTTPSchemaRegistry) -> None:
    with pytest.raises(SchemaNotFoundError):
        await registry.schema_by_id(2**31 - 7)
    with pytest.raises(SchemaNotFoundError):
        await registry.version(unique(), "latest")
    with pytest.raises(SchemaNotFoundError):
        await registry.lookup(unique(), V1)


@pytest.mark.registry
async def test_compatibility_level_and_check(registry: HTTPSchemaRegistry) -> None:
    subject = unique()
    assert (await registry.check_compatibility(subject, V1)).compatible  # nothing to break
    await registry.register(subject, V1)
    await registry.set_compatibility_level(subject, "backward")
    assert await registry.compatibility_level(subject) == "BACKWARD"
    assert (await registry.check_compatibility(subject, V2)).compatible
    verdict = await registry.check_compatibility(subject, BAD)
    assert not verdict.compatible
    assert verdict.level == "BACKWARD"
    with pytest.raises(RegistryError) as refused:
        await registry.register(subject, BAD)
    assert refused.value.status == 409
    with pytest.raises(ConfigurationError, match="unknown compatibility level"):
        await registry.set_compatibility_level(subject, "SIDEWAYS")


@pytest.mark.registry
async def test_ids_are_cached_both_ways(registry_url: str) -> None:
    calls: list[str] = []

    async def count(request: httpx.Request) -> None:
        calls.append(f"{request.method} {request.url.path}")

    async with HTTPSchemaRegistry(registry_url) as client:
        client.http().event_hooks["request"].append(count)
        subject = unique()
        schema_id = await client.register(subject, V1)
        for _ in range(5):
            assert await client.register(subject, V1) == schema_id
            assert await client.schema_by_id(schema_id) == V1
    assert len(calls) == 1, calls


# -- a scripted local server ------------------------------------------------------------------


@asynccontextmanager
async def scripted(
    answer: Callable[[int, dict[str, str]], tuple[int, bytes]],
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A loopback HTTP/1.1 server; ``answer(n, headers)`` gives request n's status and body."""
    seen: list[dict[str, str]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                if int(headers.get("content-length", 0)):
                    await reader.readexactly(int(headers["content-length"]))
                seen.append(headers)
                status, body = answer(len(seen), headers)
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n"
                    "Content-Type: application/json\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.close()
        await server.wait_closed()


def no_sleep() -> Callable[[float], Awaitable[None]]:
    async def sleep(_: float) -> None:
        return None

    return sleep


async def test_5xx_and_429_are_retried_then_succeed() -> None:
    def answer(n: int, _: dict[str, str]) -> tuple[int, bytes]:
        return (503, b"{}") if n == 1 else (429, b"{}") if n == 2 else (200, b'{"id": 41}')

    async with (
        scripted(answer) as (url, seen),
        HTTPSchemaRegistry(url, sleep=no_sleep(), retries=3) as client,
    ):
        assert await client.register("s", V1) == 41
    assert len(seen) == 3


async def test_persistent_failure_is_transient_error_after_retries() -> None:
    async with (
        scripted(lambda n, h: (500, b'{"message": "boom"}')) as (url, seen),
        HTTPSchemaRegistry(url, sleep=no_sleep(), retries=2) as client,
    ):
        with pytest.raises(RegistryUnavailableError, match="after 3 tries"):
            await client.schema_by_id(1)
    assert len(seen) == 3


async def test_unreachable_registry_is_transient_and_bounded_by_timeout() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()  # nothing listens there now: connection refused
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)

    client = HTTPSchemaRegistry(f"http://127.0.0.1:{port}", sleep=sleep, retries=3, timeout=1)
    async with client:
        with pytest.raises(RegistryUnavailableError, match="ConnectError"):
            await client.schema_by_id(1)
    assert len(delays) == 3
    assert delays[0] < delays[2] <= 2.0 * 1.2  # exponential, capped


async def test_basic_auth_from_url_and_never_shown() -> None:
    async with scripted(lambda n, h: (200, b"[]")) as (url, seen):
        with_creds = url.replace("http://", "http://svc%40corp:s3cr%3At@")
        client = HTTPSchemaRegistry(with_creds)
        async with client:
            assert await client.subjects() == []
            assert "s3cr" not in repr(client)
            assert "svc" not in repr(client)
    import base64

    assert seen[0]["authorization"] == "Basic " + base64.b64encode(b"svc@corp:s3cr:t").decode()


async def test_bearer_token_and_refused_credentials() -> None:
    async with (
        scripted(lambda n, h: (401, b'{"message": "unauthorized"}')) as (url, seen),
        HTTPSchemaRegistry(url, token="tok-123") as client,
    ):
        with pytest.raises(RegistryError, match="check the registry credentials") as err:
            await client.subjects()
    assert seen[0]["authorization"] == "Bearer tok-123"
    assert "tok-123" not in str(err.value)


async def test_errors_never_carry_the_password() -> None:
    url = "http://user:hunter2@127.0.0.1:9/apis"  # discard port: refused
    client = HTTPSchemaRegistry(url, sleep=no_sleep(), retries=0, timeout=0.5)
    async with client:
        with pytest.raises(RegistryUnavailableError) as err:
            await client.subjects()
    assert "hunter2" not in str(err.value)
    assert "hunter2" not in repr(client)


def test_open_registry_by_url(tmp_path: object) -> None:
    assert type(open_registry("http://127.0.0.1:1/x")).__name__ == "HTTPSchemaRegistry"
    assert type(open_registry("file:///tmp/x.json")).__name__ == "FileSchemaRegistry"
    with pytest.raises(ConfigurationError, match="unsupported schema registry URL") as err:
        open_registry("ftp://user:pw@host/x")
    assert "pw" not in str(err.value)
    with pytest.raises(ConfigurationError, match="either basic credentials or a token"):
        HTTPSchemaRegistry("http://u:p@h/x", token="t")


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl), as a private CA would issue."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


async def test_tls_with_a_private_ca(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    async with scripted(lambda n, h: (200, b'["tls-subject"]'), tls=context) as (url, _):
        https = url.replace("http://", "https://")
        async with HTTPSchemaRegistry(https, verify=str(cert)) as client:
            assert await client.subjects() == ["tls-subject"]
        untrusted = HTTPSchemaRegistry(https, sleep=no_sleep(), retries=0)
        async with untrusted:
            with pytest.raises(RegistryUnavailableError, match="ConnectError"):
                await untrusted.subjects()
    with pytest.raises(ConfigurationError, match="CA bundle"):
        HTTPSchemaRegistry(https, verify=str(cert) + ".missing")


@pytest.mark.registry
def test_one_client_serves_successive_event_loops(registry_url: str) -> None:
    client = HTTPSchemaRegistry(registry_url)  # made outside any loop, like a module-level codec
    subject = unique()
    first = asyncio.run(client.register(subject, V1))
    assert asyncio.run(client.versions(subject)) == [1]  # a new loop: a new connection pool
    asyncio.run(client.aclose())
    assert first > 0


@pytest.mark.registry
async def test_transitive_levels_check_every_version(registry: HTTPSchemaRegistry) -> None:
    subject = unique()
    as_int, as_string = BAD, V1  # "id" was a long in version 1, a string in version 2
    await registry.set_compatibility_level(subject, "NONE")
    await registry.register(subject, as_int)
    await registry.register(subject, as_string)
    await registry.set_compatibility_level(subject, "BACKWARD")
    assert (await registry.check_compatibility(subject, as_string)).compatible
    await registry.set_compatibility_level(subject, "BACKWARD_TRANSITIVE")
    assert not (await registry.check_compatibility(subject, as_string)).compatible
