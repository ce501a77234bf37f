"""Setup layer: rank brokers for a set of requirements; pure functions over data, no I/O.

Each candidate first passes hard filters (a failed one excludes it, with the reason), then
scoring rules add or remove points, each hit carrying its reason. The highest score wins;
ties go to the broker that is lighter to operate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from eventwire.core.capabilities import Guarantee, Support
from eventwire.setup.facts import USE_CASE_FIT, BrokerFacts
from eventwire.setup.requirements import (
    DeliveryGuarantee,
    Ordering,
    Requirements,
    RoutingNeed,
    UseCase,
)

_GB = 1024**3
_HIGH_VOLUME = 10_000.0  # msgs/s from which throughput headroom earns points
_LONG_RETENTION_DAYS = 7.0
_SMALL_TEAM = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleHit:
    """One rule that moved a candidate's score."""

    points: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Ranked:
    """A candidate after filtering and scoring."""

    name: str
    display: str
    score: int
    hits: tuple[RuleHit, ...]
    excluded_by: tuple[str, ...]
    margin: int | None  # points ahead of the next eligible candidate
    source: str

    @property
    def eligible(self) -> bool:
        return not self.excluded_by


@dataclass(frozen=True, slots=True, kw_only=True)
class Advice:
    """The ranking: eligible candidates best first, then the excluded ones."""

    ranking: tuple[Ranked, ...]
    excluded: tuple[Ranked, ...]
    winner: Ranked | None
    why_none: str | None
    caveats: tuple[str, ...] = ()  # true whichever broker is chosen

    def to_data(self) -> dict[str, Any]:
        """A JSON-ready mapping for ``eventwire advise --json``."""

        def one(r: Ranked) -> dict[str, Any]:
            return {
                "name": r.name,
                "display": r.display,
                "score": r.score,
                "margin": r.margin,
                "rules": [{"points": h.points, "reason": h.reason} for h in r.hits],
                "excluded_by": list(r.excluded_by),
                "source": r.source,
            }

        return {
            "winner": self.winner.name if self.winner else None,
            "why_none": self.why_none,
            "caveats": list(self.caveats),
            "ranking": [one(r) for r in self.ranking],
            "excluded": [one(r) for r in self.excluded],
        }


_Filter = Callable[[Requirements, BrokerFacts], str | None]
_Rule = Callable[[Requirements, BrokerFacts], Iterable[RuleHit]]


def _size(n: float) -> str:
    """Bytes in binary units, named as such (GiB, not GB, when 1024**3 is meant)."""
    for unit, factor in (("TiB", 1024**4), ("GiB", _GB), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor:
            return f"{n / factor:,.1f} {unit}"
    return f"{n:,.0f} B"


def rate(value: float) -> str:
    """A rate as people read it: 5,000,000 (not 5e+06); fractions only below 10."""
    return f"{value:,.1f}".removesuffix(".0") if value < 10 else f"{value:,.0f}"


def _persistence(req: Requirements, f: BrokerFacts) -> str | None:
    if req.persistence and not f.persistent:
        return f"messages must survive a restart, but {f.display} keeps none"
    return None


def _replay(req: Requirements, f: BrokerFacts) -> str | None:
    if req.needs_replay() and not f.replay and not f.replay_via_streams:
        return f"replay needs retained history, but {f.display} deletes messages once consumed"
    return None


def _guarantee(req: Requirements, f: BrokerFacts) -> str | None:
    if req.delivery is not DeliveryGuarantee.AT_MOST_ONCE and f.guarantee is Guarantee.AT_MOST_ONCE:
        return f"{req.delivery.value} is required, but {f.display} is at-most-once"
    return None


def _body_limit(req: Requirements, f: BrokerFacts) -> str | None:
    if req.message_size > f.max_body_bytes:
        return f"{_size(req.message_size)} messages exceed {f.display}'s {_size(f.max_body_bytes)}"
    return None


def _ram(req: Requirements, f: BrokerFacts) -> str | None:
    held = req.retained_bytes()
    if f.data_in_ram and f.persistent and held > req.memory_budget_gb * _GB:
        return (
            f"retained data ({_size(held)}) is larger than the {req.memory_budget_gb:g} GiB "
            f"RAM budget and {f.display} keeps it all in memory"
        )
    return None


def _order(req: Requirements, f: BrokerFacts) -> str | None:
    if req.ordering is not Ordering.NONE and not f.ordered_per_key:
        return f"{req.ordering.value} ordering is required, but {f.display} does not keep it"
    return None


FILTERS: tuple[_Filter, ...] = (_persistence, _replay, _guarantee, _body_limit, _ram, _order)


def _use_case(req: Requirements, f: BrokerFacts) -> Iterable[RuleHit]:
    entry = USE_CASE_FIT[req.use_case].get(f.name)
    if entry:
        yield RuleHit(points=entry[0], reason=f"{req.use_case.value}: {entry[1]}")


def _latency(req: Requirements, f: BrokerFacts) -> Iterable[RuleHit]:
    if req.latency_ms is None:
        return
    if f.typical_p99_ms * 2 <= req.latency_ms:
        yield RuleHit(
            points=1, reason=f"typical p99 ~{f.typical_p99_ms:g} ms meets {req.latency_ms:g} ms"
        )
    elif f.typical_p99_ms > req.latency_ms:
        yield RuleHit(
            points=-2,
            reason=f"typical p99 ~{f.typical_p99_ms:g} ms misses the {req.latency_ms:g} ms target",
        )


def _throughput(req: Requirements, f: BrokerFacts) -> Iterable[RuleHit]:
    peak, room = req.peak_rate, f.comfortable_rate
    if peak > room:
        yield RuleHit(
            points=-3, reason=f"{rate(peak)} msg/s is above the ~{rate(room)} msg/s it handles"
        )
    elif peak >= _HIGH_VOLUME and room >= 10 * peak:
        yield RuleHit(
            points=2, reason=f"~{rate(room)} msg/s leaves ample headroom over {rate(peak)}"
        )
    elif peak >= _HIGH_VOLUME and room >= 3 * peak:
        yield RuleHit(points=1, reason=f"~{rate(room)} msg/s leaves headroom over {rate(peak)}")


def _streams(req: Requirements, f: BrokerFacts) -> Iterable[RuleHit]:
    if req.needs_replay() and not f.replay and f.replay_via_streams:
        yield RuleHit(
            points=-1,
            reason=f"replay needs {f.display} Streams (an append-only log); eventwire's adapter "
            "uses quorum queues today",
        )


def _retention(req: Requirements, f: BrokerFacts) -> Iterable[RuleHit]:
    if req.retention_days >= _LONG_RETENTION_DAYS or req.needs_replay():
        if f.long_retention:
            yield RuleHit(points=2, reason="keeps days to years of history on disk")
        elif f.replay:
            yield RuleHit(points=-1, reason="history is bounded by memory, not disk")


def _delivery(req: Requirements, f: BrokerFacts) -> Iterable[RuleHit]:
    if req.delivery is DeliveryGuarantee.EXACTLY_ONCE:
        if f.transactions:
            yield RuleHit(points=2, reason="idempotent producer and transactions (exactly-once)")
        elif f.publish_dedup:
            yield RuleHit(points=1, reason="the broker drops duplicate publishes by message id")
    elif req.delivery is DeliveryGuarantee.AT_MOST_ONCE and f.guarantee is Guarantee.AT_MOST_ONCE:
        yield RuleHit(points=1, reason="no ack or storage overhead for fire-and-forget")


def _ordering(req: Requirements, f: BrokerFacts) -> Iterable[RuleHit]:
    if req.ordering is Ordering.NONE or not f.ordered_per_key:
        return
    if f.ordered_across_members:
        yield RuleHit(points=2, reason="keeps per-key order across a scaled-out group")
    else:
        yield RuleHit(points=-1, reason="order holds only with one consumer per group")


_ROUTING: Mapping[RoutingNeed, tuple[str, int, int, str]] = {
    RoutingNeed.PATTERNS: ("routing_patterns", 2, -1, "pattern routing"),
    RoutingNeed.PRIORITIES: ("priorities", 3, -2, "message priorities"),
    RoutingNeed.TTL: ("per_message_ttl", 2, -1, "per-message TTL"),
}


def _routing(req: Requirements, f: BrokerFacts) -> Iterable[RuleHit]:
    for need in sorted(req.routing):
        attr, gain, loss, label = _ROUTING[need]
        if getattr(f, attr):
            yield RuleHit(points=gain, reason=f"native {label}")
        else:
            yield RuleHit(points=loss, reason=f"no native {label}: emulate it in the service")


def _failures(req: Requirements, f: BrokerFacts) -> Iterable[RuleHit]:
    if req.use_case is not UseCase.WORK_QUEUE or f.guarantee is Guarantee.AT_MOST_ONCE:
        return
    if f.dead_letter is Support.NATIVE:
        yield RuleHit(points=1, reason="dead-lettering is native to the broker")
    if f.delayed_redelivery is Support.NATIVE:
        yield RuleHit(points=1, reason="delayed redelivery is native to the broker")


def _operations(req: Requirements, f: BrokerFacts) -> Iterable[RuleHit]:
    if f.broker in req.operated:
        yield RuleHit(points=3, reason=f"the team already runs {f.broker.value}: nothing new")
    elif req.team_size <= _SMALL_TEAM and f.ops_weight >= 3:
        yield RuleHit(
            points=-2, reason=f"a {f.display} cluster is heavy for a team of {req.team_size}"
        )


RULES: tuple[_Rule, ...] = (
    _use_case,
    _latency,
    _throughput,
    _streams,
    _retention,
    _delivery,
    _ordering,
    _routing,
    _failures,
    _operations,
)


def _evaluate(req: Requirements, f: BrokerFacts) -> tuple[tuple[str, ...], tuple[RuleHit, ...]]:
    excluded = tuple(reason for check in FILTERS if (reason := check(req, f)) is not None)
    hits = tuple(hit for rule in RULES for hit in rule(req, f) if hit.points)
    return excluded, hits


def advise(req: Requirements, candidates: Iterable[BrokerFacts]) -> Advice:
    """Rank ``candidates`` for ``req``; never raises for a valid ``Requirements``."""
    scored: list[tuple[BrokerFacts, tuple[str, ...], tuple[RuleHit, ...], int]] = []
    for f in candidates:
        excluded, hits = _evaluate(req, f)
        scored.append((f, excluded, hits, sum(h.points for h in hits)))
    # Best score first; on a tie the lighter system to operate, then the name for stability.
    scored.sort(key=lambda item: (-item[3], item[0].ops_weight, item[0].name))
    eligible = [item for item in scored if not item[1]]
    ranking: list[Ranked] = []
    for index, (f, _, hits, score) in enumerate(eligible):
        nxt = eligible[index + 1][3] if index + 1 < len(eligible) else None
        ranking.append(_ranked(f, score, hits, (), None if nxt is None else score - nxt))
    dropped = tuple(_ranked(f, score, hits, ex, None) for f, ex, hits, score in scored if ex)
    winner = ranking[0] if ranking else None
    why_none = None
    if winner is None:
        reasons = sorted({r.excluded_by[0] for r in dropped})
        why_none = "no broker fits: " + "; ".join(reasons) if reasons else "no broker to rank"
    elif all(req.peak_rate > f.comfortable_rate for f, *_ in eligible):
        # Recommending the least bad would hide that none of them handles it.
        best = max((f for f, *_ in eligible), key=lambda f: f.comfortable_rate)
        winner = None
        why_none = (
            f"no broker fits: {rate(req.peak_rate)} msg/s is above what every candidate "
            f"handles (the most, {best.display}, ~{rate(best.comfortable_rate)} msg/s on one "
            "modest cluster): shard the traffic or size a dedicated cluster first"
        )
    return Advice(
        ranking=tuple(ranking),
        excluded=dropped,
        winner=winner,
        why_none=why_none,
        caveats=_caveats(req),
    )


def _caveats(req: Requirements) -> tuple[str, ...]:
    caveats = []
    if req.delivery is DeliveryGuarantee.EXACTLY_ONCE:
        caveats.append(
            "exactly-once means effectively once: at-least-once delivery plus idempotent "
            "handling; only effects written through ctx.effectively_once (the PostgreSQL or "
            "SQLite store) happen once, calls to other systems can repeat"
        )
        if req.ordering is Ordering.GLOBAL:
            caveats.append(
                "exactly-once with global order needs ONE partition or queue read by ONE "
                "consumer at a time: throughput is that of a single consumer, and a failing "
                "message blocks everything behind it"
            )
    return tuple(caveats)


def _ranked(
    f: BrokerFacts, score: int, hits: tuple[RuleHit, ...], ex: tuple[str, ...], margin: int | None
) -> Ranked:
    return Ranked(
        name=f.name,
        display=f.display,
        score=score,
        hits=hits,
        excluded_by=ex,
        margin=margin,
        source=f.source,
    )
