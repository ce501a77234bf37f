"""Serialization layer: ``HTTPSchemaRegistry``, a client of the Confluent-compatible REST API.

Works with Confluent Schema Registry, Apicurio (``.../apis/ccompat/v7``), Karapace and
Redpanda. Ids are cached both ways (an id's schema never changes); transport failures,
timeouts, 429 and 5xx answers are retried with capped exponential backoff and then raised as
``RegistryUnavailableError`` (transient). Credentials (in the URL's user-info, or given as
``username``/``password``/``token``) never appear in a repr, log line or error.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import orjson

from eventwire.core.errors import ConfigurationError
from eventwire.serialization.registry import (
    Compatibility,
    RegisteredSchema,
    RegistryError,
    RegistryUnavailableError,
    Schema,
    SchemaNotFoundError,
    SchemaReference,
    SchemaType,
    check_level,
)

_CONTENT_TYPE: Final = "application/vnd.schemaregistry.v1+json"
_NOT_FOUND_CODES: Final = {40401, 40402, 40403}
_RETRY_STATUSES: Final = {429, 500, 502, 503, 504}


class HTTPSchemaRegistry:
    """A Confluent-compatible schema registry over HTTP(S); an async context manager."""

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        verify: bool | str | ssl.SSLContext = True,
        cert: str | tuple[str, str] | None = None,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.2,
        max_backoff: float = 2.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``retries``: extra tries after the first on a transient failure; ``verify`` a CA
        bundle path or an ``SSLContext`` for private CAs; ``cert`` a client certificate."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                "schema registry URL must look like http(s)://HOST[:PORT][/PATH]"
            )
        if parts.username is not None:
            username = username or _unquote(parts.username)
            password = password or _unquote(parts.password or "")
        if token is not None and username is not None:
            raise ConfigurationError("give a registry either basic credentials or a token")
        if retries < 0 or timeout <= 0:
            raise ConfigurationError("registry retries must be >= 0 and timeout > 0")
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        self.url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self._retries = retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._sleep = sleep
        headers = {"Accept": _CONTENT_TYPE}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        auth = httpx.BasicAuth(username, password or "") if username is not None else None
        self._client_options: dict[str, Any] = {
            "base_url": self.url,
            "auth": auth,
            "headers": headers,
            "verify": _ssl_context(verify),
            "cert": cert,
            "timeout": timeout,
            # No idle connections kept: lookups are rare (ids are cached), and a pooled socket
            # would outlive the event loop it belongs to when a codec serves several loops.
            "limits": httpx.Limits(max_keepalive_connections=0),
        }
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._by_id: dict[int, Schema] = {}
        self._ids: dict[tuple[str, Schema], int] = {}

    def __repr__(self) -> str:
        return f"<HTTPSchemaRegistry {self.url}>"

    async def __aenter__(self) -> HTTPSchemaRegistry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await client.aclose()

    def http(self) -> httpx.AsyncClient:
        """The HTTP client of the running event loop. A codec is often made at import time
        and used by more than one loop in a process (``serve()`` per run, tests), so each
        loop gets its own client (the id caches are shared: ids never change)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = httpx.AsyncClient(**self._client_options)
            self._client_loop = loop
        return self._client

    # -- the registry protocol ------------------------------------------------------------

    async def register(self, subject: str, schema: Schema) -> int:
        cached = self._ids.get((subject, schema))
        if cached is not None:
            return cached
        answer = await self._call("POST", f"/subjects/{_q(subject)}/versions", _body(schema))
        schema_id = int(answer["id"])
        self._ids[(subject, schema)] = schema_id
        self._by_id.setdefault(schema_id, schema)
        return schema_id

    async def lookup(self, subject: str, schema: Schema) -> RegisteredSchema:
        answer = await self._call("POST", f"/subjects/{_q(subject)}", _body(schema))
        found = _registered(answer, default_type=schema.schema_type)
        self._ids[(subject, schema)] = found.schema_id
        return found

    async def schema_by_id(self, schema_id: int) -> Schema:
        cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        answer = await self._call("GET", f"/schemas/ids/{int(schema_id)}")
        schema = _schema(answer)
        self._by_id[schema_id] = schema
        return schema

    async def version(self, subject: str, version: int | Literal["latest"]) -> RegisteredSchema:
        answer = await self._call("GET", f"/subjects/{_q(subject)}/versions/{_q(str(version))}")
        found = _registered(answer)
        self._by_id.setdefault(found.schema_id, found.schema)
        return found

    async def subjects(self) -> list[str]:
        """Every subject the registry lists; see ``possibly_capped`` for long lists."""
        return [str(s) for s in await self._call("GET", "/subjects")]

    async def versions(self, subject: str) -> list[int]:
        return [int(v) for v in await self._call("GET", f"/subjects/{_q(subject)}/versions")]

    async def compatibility_level(self, subject: str) -> str:
        try:
            answer = await self._call("GET", f"/config/{_q(subject)}?defaultToGlobal=true")
        except SchemaNotFoundError:
            answer = await self._call("GET", "/config")
        return str(answer.get("compatibilityLevel") or answer.get("compatibility") or "NONE")

    async def set_compatibility_level(self, subject: str, level: str) -> None:
        await self._call("PUT", f"/config/{_q(subject)}", {"compatibility": check_level(level)})

    async def check_compatibility(self, subject: str, schema: Schema) -> Compatibility:
        level = await self.compatibility_level(subject)
        if not await self.versions_or_empty(subject):
            return Compatibility(compatible=True, level=level, messages=("first version",))
        if level == "NONE":
            # NONE accepts any schema by definition; asked anyway, Apicurio answers "false".
            return Compatibility(compatible=True, level=level, messages=("level NONE",))
        path = f"/compatibility/subjects/{_q(subject)}/versions/latest?verbose=true"
        if level.endswith("_TRANSITIVE"):
            path = f"/compatibility/subjects/{_q(subject)}/versions?verbose=true"
        answer = await self._call("POST", path, _body(schema))
        messages = answer.get("messages") or ()
        return Compatibility(
            compatible=bool(answer.get("is_compatible")),
            level=level,
            messages=tuple(str(m) for m in messages),
        )

    async def versions_or_empty(self, subject: str) -> list[int]:
        """The subject's versions, ``[]`` when the subject does not exist yet."""
        try:
            return await self.versions(subject)
        except SchemaNotFoundError:
            return []

    # -- HTTP -----------------------------------------------------------------------------

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        content = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": _CONTENT_TYPE} if content is not None else None
        what = f"{method} {self.url}{path.split('?', 1)[0]}"
        last = ""
        for attempt in range(self._retries + 1):
            if attempt:
                delay = min(self._max_backoff, self._backoff * 2 ** (attempt - 1))
                await self._sleep(delay * random.uniform(0.8, 1.2))
            try:
                response = await self.http().request(method, path, content=content, headers=headers)
            except (httpx.HTTPError, OSError) as exc:
                last = f"{type(exc).__name__}"  # httpx's text may echo the URL: name only
                continue
            if response.status_code in _RETRY_STATUSES:
                last = f"HTTP {response.status_code}"
                continue
            return _answer(response, what)
        raise RegistryUnavailableError(
            f"schema registry {self.url} unavailable after {self._retries + 1} tries ({last})"
        )


def _answer(response: httpx.Response, what: str) -> Any:
    try:
        payload = orjson.loads(response.content) if response.content else {}
    except orjson.JSONDecodeError:
        payload = {}
    if response.is_success:
        return payload
    detail = payload.get("message") if isinstance(payload, dict) else None
    code = payload.get("error_code") if isinstance(payload, dict) else None
    text = f"{what}: HTTP {response.status_code}" + (f": {detail}" if detail else "")
    if response.status_code == 404 or code in _NOT_FOUND_CODES:
        raise SchemaNotFoundError(text, status=response.status_code, code=code)
    if response.status_code in (401, 403):
        text += " (check the registry credentials)"
    raise RegistryError(text, status=response.status_code, code=code)


def _body(schema: Schema) -> dict[str, Any]:
    body: dict[str, Any] = {"schema": schema.schema}
    if schema.schema_type != "AVRO":  # AVRO is the API's default and older servers want it absent
        body["schemaType"] = schema.schema_type
    if schema.references:
        body["references"] = [
            {"name": r.name, "subject": r.subject, "version": r.version} for r in schema.references
        ]
    return body


def _schema(answer: Any, default_type: SchemaType = "AVRO") -> Schema:
    kind = str(answer.get("schemaType") or default_type).upper()
    if kind not in ("AVRO", "PROTOBUF", "JSON"):
        raise RegistryError(f"registry returned an unknown schema type {kind!r}")
    refs = tuple(
        SchemaReference(name=str(r["name"]), subject=str(r["subject"]), version=int(r["version"]))
        for r in answer.get("references") or ()
    )
    return Schema(schema=str(answer["schema"]), schema_type=kind, references=refs)  # type: ignore[arg-type]


def _registered(answer: Any, default_type: SchemaType = "AVRO") -> RegisteredSchema:
    return RegisteredSchema(
        subject=str(answer["subject"]),
        version=int(answer["version"]),
        schema_id=int(answer["id"]),
        schema=_schema(answer, default_type),
    )


def _ssl_context(verify: bool | str | ssl.SSLContext) -> bool | ssl.SSLContext:
    if isinstance(verify, str):
        try:
            return ssl.create_default_context(cafile=verify)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"cannot load the registry CA bundle {verify}: {exc}") from exc
    return verify


def _q(part: str) -> str:
    return quote(part, safe="")


def _unquote(part: str) -> str:
    from urllib.parse import unquote

    return unquote(part)
