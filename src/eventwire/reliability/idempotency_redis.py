"""Reliability layer: an idempotency store in Redis, shared by every worker that reaches it.

Each done-mark is one key with a TTL (``SET key 1 PX ttl``): Redis expires it itself, so
there is nothing to purge, and a mark renewed by a second ``mark_done`` gets a fresh TTL,
the same semantics as the memory and SQLite stores. There is no ``complete_with``: Redis
cannot commit a side effect in another system together with the mark, so this store is not a
``TransactionalIdempotencyStore`` (use ``PostgresIdempotencyStore`` or the SQLite one for
``ctx.effectively_once``). With Redis persistence off, a Redis restart forgets the marks and
redeliveries run again (at-least-once, never lost).

redis-py is imported when the store first connects, so ``import eventwire`` loads no client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventwire.core.errors import BrokerError, ConfigurationError
from eventwire.core.url import redact
from eventwire.reliability.idempotency import DEFAULT_TTL, check_ttl

if TYPE_CHECKING:
    from redis.asyncio import Redis

DEFAULT_PREFIX = "eventwire:idempotency"


class RedisIdempotencyStore:
    """Done-marks as expiring Redis keys, ``{prefix}:{len(group)}:{group}:{message id}``."""

    def __init__(self, url: str, *, ttl: float = DEFAULT_TTL, prefix: str = DEFAULT_PREFIX) -> None:
        check_ttl(ttl)
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(
                f"idempotency store URL {redact(url)!r} is not a Redis URL: "
                "write it like redis://localhost:6379/0"
            )
        self._url = url
        self._ttl_ms = max(1, round(ttl * 1000))
        self._prefix = prefix
        self._client: Redis | None = None

    def key(self, group: str, message_id: str) -> str:
        """The key of one mark; the group's length keeps "a:b"+"c" apart from "a"+"b:c"."""
        return f"{self._prefix}:{len(group)}:{group}:{message_id}"

    async def is_done(self, group: str, message_id: str) -> bool:
        found = await self._call("checking a mark", "exists", self.key(group, message_id))
        return bool(found)

    async def mark_done(self, group: str, message_id: str) -> None:
        key = self.key(group, message_id)
        await self._call("writing a mark", "set", key, b"1", px=self._ttl_ms)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()  # reopened lazily: an App may be entered again

    async def _call(self, doing: str, command: str, *args: Any, **kwargs: Any) -> Any:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        if self._client is None:
            self._client = aioredis.Redis.from_url(self._url, socket_timeout=10.0)
        try:
            return await getattr(self._client, command)(*args, **kwargs)
        except (RedisError, OSError) as exc:
            raise BrokerError(
                f"{doing} in the idempotency store at {redact(self._url)} failed: "
                f"{type(exc).__name__}: {redact(str(exc))}"
            ) from exc

    def __repr__(self) -> str:
        return f"RedisIdempotencyStore({redact(self._url)!r})"
