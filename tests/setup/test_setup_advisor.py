"""Setup tests: the advisor's sanity cases, hard filters, JSON shape and a property test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventwire.setup import advisor, facts, requirements, summary
from eventwire.setup.requirements import (
    Broker,
    DeliveryGuarantee,
    Ordering,
    Requirements,
    RoutingNeed,
    UseCase,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "requirements"
# The advisor's table: documented facts with the catalog's claims.
TABLES = {"catalog": facts.current()}

SANITY = [
    ("work queue with retries", {"use_case": "work-queue", "peak_rate": 300}, {"rabbitmq"}),
    (
        "event sourcing with replay and high volume",
        {
            "use_case": "event-sourcing",
            "replay": True,
            "peak_rate": 50_000,
            "retention_days": 30,
            "team_size": 8,
        },
        {"kafka"},
    ),
    (
        "low-latency request-reply",
        {
            "use_case": "request-reply",
            "latency_ms": 2,
            "delivery": "at-most-once",
            "persistence": False,
            "peak_rate": 2000,
        },
        {"nats-core", "nats-jetstream"},
    ),
    (
        "fire-and-forget notifications with Redis in place",
        {
            "use_case": "pub-sub",
            "delivery": "at-most-once",
            "persistence": False,
            "operated": ["redis"],
            "peak_rate": 500,
        },
        {"redis-pubsub", "redis-streams"},
    ),
]


@pytest.mark.parametrize("table", sorted(TABLES))
@pytest.mark.parametrize(("label", "data", "winners"), SANITY, ids=[s[0] for s in SANITY])
def test_sanity_cases(table: str, label: str, data: dict[str, object], winners: set[str]) -> None:
    advice = advisor.advise(requirements.build(data), TABLES[table])
    assert advice.winner is not None, label
    assert advice.winner.name in winners, (label, [(r.name, r.score) for r in advice.ranking])
    assert advice.winner.hits, "the winner says which rules moved it"


@pytest.mark.parametrize(
    ("example", "winner"),
    [
        ("orders-work-queue.yaml", "rabbitmq"),
        ("event-sourcing.yaml", "kafka"),
        ("request-reply.yaml", "nats-core"),
        ("notifications-redis.yaml", "redis-pubsub"),
    ],
)
def test_sample_requirement_files(example: str, winner: str) -> None:
    advice = advisor.advise(requirements.load(EXAMPLES / example), facts.current())
    assert advice.winner is not None
    assert advice.winner.name == winner


def test_data_larger_than_ram_excludes_redis() -> None:
    req = requirements.build(
        {
            "use_case": "streaming",
            "peak_rate": 10_000,
            "retention_days": 7,
            "memory_budget_gb": 8,
            "team_size": 10,
        }
    )
    advice = advisor.advise(req, facts.current())
    excluded = {r.name: r.excluded_by for r in advice.excluded}
    assert "RAM budget" in " ".join(excluded["redis-streams"])
    assert advice.winner is not None
    assert advice.winner.name == "kafka"


def test_replay_excludes_pubsub_and_core_nats() -> None:
    req = requirements.build({"use_case": "pub-sub", "replay": True})
    excluded = {r.name for r in advisor.advise(req, facts.current()).excluded}
    assert {"redis-pubsub", "nats-core"} <= excluded


def test_routing_needs_favour_rabbitmq() -> None:
    req = requirements.build({"use_case": "pub-sub", "routing": "patterns,priorities,ttl"})
    advice = advisor.advise(req, facts.current())
    assert advice.winner is not None
    assert advice.winner.name == "rabbitmq"


def test_margin_is_the_gap_to_the_next() -> None:
    advice = advisor.advise(requirements.build({}), facts.current())
    for first, second in zip(advice.ranking, advice.ranking[1:], strict=False):
        assert first.margin == first.score - second.score
    assert advice.ranking[-1].margin is None


def test_nothing_fits_says_why() -> None:
    req = requirements.build({"message_size": 2**30, "delivery": "exactly-once"})
    advice = advisor.advise(req, facts.current())
    assert advice.winner is None
    assert advice.why_none is not None
    assert advice.why_none.startswith("no broker fits: ")
    data = advice.to_data()
    assert data["winner"] is None
    assert json.loads(json.dumps(data)) == data


requirement_sets = st.builds(
    Requirements,
    use_case=st.sampled_from(UseCase),
    peak_rate=st.floats(min_value=0, max_value=100_000_000, allow_nan=False),
    message_size=st.integers(min_value=1, max_value=2**40),
    delivery=st.sampled_from(DeliveryGuarantee),
    ordering=st.sampled_from(Ordering),
    latency_ms=st.none() | st.floats(min_value=0.001, max_value=1e6, allow_nan=False),
    replay=st.booleans(),
    retention_days=st.floats(min_value=0, max_value=36_500, allow_nan=False),
    persistence=st.booleans(),
    routing=st.frozensets(st.sampled_from(RoutingNeed)),
    operated=st.frozensets(st.sampled_from(Broker)),
    team_size=st.integers(min_value=1, max_value=100_000),
    memory_budget_gb=st.floats(min_value=0.001, max_value=1_000_000, allow_nan=False),
)


@settings(max_examples=300, deadline=None)
@given(req=requirement_sets)
def test_no_requirement_set_crashes_the_advisor(req: Requirements) -> None:
    advice = advisor.advise(req, TABLES["catalog"])
    if advice.winner is None:
        assert advice.why_none
        # Either everything was excluded, or nothing handles the rate (ranked for reference).
        assert not advice.ranking or "above what every candidate handles" in advice.why_none
    else:
        assert advice.winner is advice.ranking[0]
        assert advice.why_none is None
    assert len(advice.ranking) + len(advice.excluded) == len(TABLES["catalog"])
    assert all(r.excluded_by for r in advice.excluded)
    json.dumps(advice.to_data())


def test_advisor_imports_no_broker_client() -> None:
    code = (
        "import sys, eventwire.setup.advisor, eventwire.setup.facts as f; f.current();"
        "clients = ('aio_pika', 'aiormq', 'redis', 'nats', 'aiokafka', 'confluent_kafka',"
        " 'psycopg');"
        "bad = [m for m in clients if m in sys.modules];"
        "print(','.join(bad))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_facts_never_restate_what_the_catalog_claims() -> None:
    from dataclasses import fields

    from eventwire.brokers.catalog import profiles
    from eventwire.core.capabilities import Capabilities

    claims = {f.name for f in fields(Capabilities)}
    assert not claims & {f.name for f in fields(facts.Documented)}
    by_name = {f.name: f for f in facts.current()}
    for profile in profiles():
        if profile.name not in by_name:
            continue  # memory, sqlite: embedded, not candidates the advisor ranks
        merged = by_name[profile.name]
        for name in (f.name for f in fields(facts.Claims)):
            assert getattr(merged, name) == getattr(profile.capabilities, name), (profile, name)
    # Every candidate's claims are a catalog profile's (Kafka's too, now that it is built).
    assert all(f.source.startswith("catalog profile") for f in by_name.values())
    assert "kafka" in by_name


# -- issue 15, items 15-17: the advisor as an expert would answer ---------------------------


def test_at_most_once_without_persistence_stated_does_not_require_it() -> None:
    req = requirements.build({"use_case": "pub-sub", "delivery": "at-most-once"})
    assert req.persistence is False
    eligible = {r.name for r in advisor.advise(req, facts.current()).ranking}
    assert {"nats-core", "redis-pubsub"} <= eligible  # the natural fire-and-forget answers
    stated = requirements.build({"delivery": "at-most-once", "persistence": True})
    assert stated.persistence is True  # what is said wins


def test_request_reply_without_delivery_stated_keeps_nats_core() -> None:
    req = requirements.build({"use_case": "request-reply"})
    advice = advisor.advise(req, facts.current())
    assert "nats-core" in {r.name for r in advice.ranking}
    assert advice.winner is not None
    assert advice.winner.name == "nats-core"


def test_a_rate_beyond_every_broker_says_nothing_fits() -> None:
    req = requirements.build({"use_case": "streaming", "peak_rate": 5_000_000})
    advice = advisor.advise(req, facts.current())
    assert advice.winner is None
    assert advice.why_none is not None
    assert "5,000,000 msg/s is above what every candidate handles" in advice.why_none
    assert "e+06" not in advice.why_none
    text = summary.render_advice(req, advice)
    assert "No recommendation: no broker fits" in text
    assert "5,000,000 msg/s" in text
    assert "e+0" not in text


def test_sizes_say_gib_and_retention_uses_the_average_rate() -> None:
    base = {"use_case": "streaming", "replay": True, "retention_days": 30, "message_size": 1000,
            "peak_rate": 20_000, "memory_budget_gb": 100}  # fmt: skip
    at_peak = advisor.advise(requirements.build(base), facts.current())
    redis = next(r for r in at_peak.excluded if r.name == "redis-streams")
    assert "GiB" in redis.excluded_by[0]
    assert " GB " not in redis.excluded_by[0]
    on_average = requirements.build({**base, "average_rate": 20})
    assert on_average.retained_bytes() == 20 * 1000 * 30 * 86_400
    excluded = {r.name for r in advisor.advise(on_average, facts.current()).excluded}
    assert "redis-streams" not in excluded  # 48 GiB at 20 msg/s fits the 100 GiB budget


def test_replay_does_not_rule_rabbitmq_out_it_names_streams() -> None:
    req = requirements.build({"use_case": "streaming", "replay": True, "retention_days": 3})
    advice = advisor.advise(req, facts.current())
    rabbit = next(r for r in advice.ranking if r.name == "rabbitmq")
    assert any("Streams" in h.reason for h in rabbit.hits)


def test_exactly_once_with_global_order_gets_a_caveat() -> None:
    req = requirements.build({"delivery": "exactly-once", "ordering": "global"})
    advice = advisor.advise(req, facts.current())
    assert any("global order" in c and "single consumer" in c for c in advice.caveats)
    assert advice.to_data()["caveats"] == list(advice.caveats)
    assert "Caveats:" in summary.render_advice(req, advice)
