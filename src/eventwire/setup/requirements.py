"""Setup layer: a service's messaging requirements as a typed model, from flags or YAML."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

from eventwire.core.errors import ConfigurationError


class RequirementsError(ConfigurationError):
    """Requirements that cannot be read or are invalid; the message is one line."""


class UseCase(StrEnum):
    """What the messages are for."""

    WORK_QUEUE = "work-queue"
    PUB_SUB = "pub-sub"
    EVENT_SOURCING = "event-sourcing"
    STREAMING = "streaming"
    REQUEST_REPLY = "request-reply"


class DeliveryGuarantee(StrEnum):
    """What the service can tolerate when things fail."""

    AT_MOST_ONCE = "at-most-once"
    AT_LEAST_ONCE = "at-least-once"
    EXACTLY_ONCE = "exactly-once"  # read as "effectively once": at-least-once + idempotency


class Ordering(StrEnum):
    """Which messages must be handled in publish order."""

    NONE = "none"
    PER_KEY = "per-key"
    GLOBAL = "global"


class RoutingNeed(StrEnum):
    """Routing features the service relies on."""

    PATTERNS = "patterns"
    PRIORITIES = "priorities"
    TTL = "ttl"


class Broker(StrEnum):
    """Brokers a team may already operate (and the ones init scaffolds for)."""

    RABBITMQ = "rabbitmq"
    KAFKA = "kafka"
    NATS = "nats"
    REDIS = "redis"


_MAX_RATE = 100_000_000.0  # beyond any single cluster; above it the number is a typo


class Requirements(BaseModel):
    """Everything the advisor weighs. Defaults describe a modest at-least-once work queue."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    use_case: UseCase = UseCase.WORK_QUEUE
    peak_rate: float = Field(default=100.0, ge=0, le=_MAX_RATE, description="messages/second")
    # Sizes retention: the broker holds what arrives on average, not at peak, for days.
    average_rate: float | None = Field(default=None, ge=0, le=_MAX_RATE)
    message_size: int = Field(default=1024, ge=1, le=2**40, description="typical body, bytes")
    # Unstated: at-most-once for request-reply (the caller retries on its timeout), else
    # at-least-once; see _defaults_that_follow.
    delivery: DeliveryGuarantee = DeliveryGuarantee.AT_LEAST_ONCE
    ordering: Ordering = Ordering.NONE
    latency_ms: float | None = Field(default=None, gt=0, description="p99 target, ms")
    replay: bool = False  # a new consumer must be able to read history
    retention_days: float = Field(default=0.0, ge=0, le=36_500)
    # Unstated: no for at-most-once (fire-and-forget keeps nothing), else yes.
    persistence: bool = True  # messages must survive a broker restart
    routing: frozenset[RoutingNeed] = frozenset()
    operated: frozenset[Broker] = frozenset()  # brokers the team already runs
    team_size: int = Field(default=3, ge=1, le=100_000)
    memory_budget_gb: float = Field(default=16.0, gt=0, le=1_000_000)  # RAM for the broker

    @model_validator(mode="before")
    @classmethod
    def _defaults_that_follow(cls, data: Any) -> Any:
        """Defaults an expert derives from what was said, for the fields left unsaid."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("delivery") is None:
            asked = data.get("use_case")
            reply = asked in (UseCase.REQUEST_REPLY, UseCase.REQUEST_REPLY.value)
            data["delivery"] = (
                DeliveryGuarantee.AT_MOST_ONCE if reply else DeliveryGuarantee.AT_LEAST_ONCE
            )
        if data.get("persistence") is None:
            delivery = data["delivery"]
            fire_and_forget = delivery in (
                DeliveryGuarantee.AT_MOST_ONCE,
                DeliveryGuarantee.AT_MOST_ONCE.value,
            )
            data["persistence"] = not fire_and_forget
        return data

    def retained_bytes(self) -> float:
        """Bytes the broker holds for the retention period (0 without retention), at the
        average rate when one is given, else at the peak rate."""
        rate = self.peak_rate if self.average_rate is None else self.average_rate
        return rate * self.message_size * self.retention_days * 86_400

    def needs_replay(self) -> bool:
        """Event sourcing always needs history; others only when they say so."""
        return self.replay or self.use_case is UseCase.EVENT_SOURCING

    def to_data(self) -> dict[str, Any]:
        """A JSON/YAML-ready mapping (sets as sorted lists)."""
        data = self.model_dump(mode="json")
        data["routing"] = sorted(data["routing"])
        data["operated"] = sorted(data["operated"])
        return data


def _first_error(exc: PydanticValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"]) or "requirements"
    message = str(err["msg"])
    if err["type"] == "enum":
        allowed = err.get("ctx", {}).get("expected", "")
        message = f"unknown value {err['input']!r}, expected {allowed}"
    elif err["type"] == "extra_forbidden":
        known = ", ".join(Requirements.model_fields)
        message = f"unknown field (known fields: {known})"
    return f"{where}: {message}"


def build(data: dict[str, Any]) -> Requirements:
    """Validate ``data`` (YAML or flags) into ``Requirements``; raise a one-line error."""
    cleaned = {key.replace("-", "_"): value for key, value in data.items() if value is not None}
    for field in ("routing", "operated"):
        value = cleaned.get(field)
        if isinstance(value, str):
            cleaned[field] = [part.strip() for part in value.split(",") if part.strip()]
    try:
        return Requirements.model_validate(cleaned)
    except PydanticValidationError as exc:
        raise RequirementsError(f"invalid requirements: {_first_error(exc)}") from None


def load(path: Path, overrides: dict[str, Any] | None = None) -> Requirements:
    """Requirements from a YAML file, with ``overrides`` (flags) taking precedence."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RequirementsError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise RequirementsError(f"{path} is not valid YAML{where}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RequirementsError(f"{path} must hold a mapping of requirement fields")
    # Files may nest everything under a top-level "requirements:" key.
    if set(raw) == {"requirements"} and isinstance(raw["requirements"], dict):
        raw = raw["requirements"]
    return build({**{str(k): v for k, v in raw.items()}, **(overrides or {})})
