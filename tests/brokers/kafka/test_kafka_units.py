"""Tests: the Kafka adapter's pure parts: commit points, options, topic names, the envelope."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventwire.brokers.kafka import envelope, topics
from eventwire.brokers.kafka.offsets import PartitionProgress, parse_metadata
from eventwire.brokers.kafka.options import KafkaOptions
from eventwire.core import headers as h
from eventwire.core.errors import ConfigurationError
from eventwire.core.message import Message
from eventwire.core.url import BrokerURL


def test_commit_point_never_passes_an_unfinished_offset() -> None:
    progress = PartitionProgress(epoch=1)
    for offset in range(10, 20):
        progress.handed(offset, 1)
    for offset in (11, 12, 15, 19):
        assert progress.finished(offset)
    assert progress.commit_point() == 10  # 10 is still running
    assert progress.finished(10)
    assert progress.commit_point() == 13
    for offset in (13, 14, 16, 17, 18):
        progress.finished(offset)
    assert progress.commit_point() == 20  # everything done: one past the last


def test_transaction_point_counts_the_delivery_as_finished_but_no_other() -> None:
    progress = PartitionProgress(epoch=1)
    for offset in (5, 6, 7):
        progress.handed(offset, 1)
    assert progress.point_after(5) == 6  # 6 still open: commit up to it
    assert progress.point_after(6) == 5  # 5 still open: 6 cannot be committed yet
    progress.finished(5)
    progress.finished(6)
    assert progress.point_after(7) == 8
    assert progress.commit_point() == 7  # nothing changed by asking


def test_no_periodic_commit_goes_behind_a_transaction_in_flight() -> None:
    # The transaction commits 6 (past 5); the delivery is settled locally only afterwards.
    # A periodic commit of 5 in between would land after the transaction's and move the
    # group's offset back, so a crash there would run the transaction's input again.
    progress = PartitionProgress(epoch=1)
    progress.handed(5, 1)
    progress.committed((5, ""))
    progress.handed(6, 1)
    progress.finished(6)
    assert progress.point_after(5) == 7
    assert progress.to_commit() is None  # held: 5 is the lowest open and in a transaction
    assert progress.finished(5)  # settled after the transaction committed
    assert progress.to_commit() == (7, "")


def test_a_transaction_above_the_lowest_open_offset_holds_nothing_back() -> None:
    progress = PartitionProgress(epoch=1)
    progress.handed(4, 1)
    progress.handed(5, 1)
    assert progress.point_after(5) == 4  # the transaction commits 4 as well
    value = progress.to_commit()
    assert value is not None
    assert value[0] == 4  # the same point as the transaction's: never behind it


@given(st.permutations(list(range(40))), st.integers(min_value=0, max_value=40))
def test_random_completion_order_commit_point_is_lowest_unfinished(
    order: list[int], done: int
) -> None:
    progress = PartitionProgress(epoch=1)
    for offset in range(40):
        progress.handed(offset, 1)
    for offset in order[:done]:
        progress.finished(offset)
    unfinished = set(order[done:])
    assert progress.commit_point() == (min(unfinished) if unfinished else 40)


def test_settling_twice_or_an_unknown_offset_counts_once() -> None:
    progress = PartitionProgress(epoch=1)
    progress.handed(5, 1)
    assert progress.finished(5)
    assert not progress.finished(5)
    assert not progress.finished(99)


def test_metadata_carries_attempts_of_unfinished_offsets_to_the_next_member() -> None:
    progress = PartitionProgress(epoch=1)
    progress.handed(3, 1)
    progress.handed(4, 2)
    progress.handed(5, 1)
    progress.finished(4)
    progress.unhanded(5)  # buffered, never handed to the application: no attempt used
    point, metadata = progress.to_commit() or (None, "")
    assert point == 3
    assert parse_metadata(metadata) == {3: 1}
    progress.committed((point, metadata))
    assert progress.to_commit() is None, "unchanged progress is not committed again"
    nxt = PartitionProgress(epoch=2, prior=parse_metadata(metadata))
    assert nxt.attempt_for(3, 1) == 2
    assert nxt.attempt_for(3, 1) == 1, "the earlier try counts once"
    assert nxt.attempt_for(7, 4) == 4, "a retry copy's own attempt header stands"


def test_skipped_records_advance_the_commit_point() -> None:
    progress = PartitionProgress(epoch=1)
    progress.skipped(0)
    progress.skipped(1)
    assert progress.commit_point() == 2


def test_parse_metadata_ignores_garbage() -> None:
    assert parse_metadata(None) == {}
    assert parse_metadata("x:1,2:y,,7:3") == {7: 3}


def test_options_from_url() -> None:
    url = BrokerURL.parse(
        "kafka+ssl://svc:s3cret@k1:9093?bootstrap=k2:9093,k3:9093&partitions=12&"
        "replication=3&sasl_mechanism=SCRAM-SHA-512&create_topics=false&linger_ms=0"
    )
    options = KafkaOptions.from_url(url)
    assert options.bootstrap == "k1:9093,k2:9093,k3:9093"
    assert (options.partitions, options.replication, options.create_topics) == (12, 3, False)
    config = options.producer_config()
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert config["acks"] == "all"
    assert config["enable.idempotence"] is True
    assert "s3cret" not in repr(options)
    consumer = options.consumer_config("g", from_earliest=True)
    assert consumer["enable.auto.offset.store"] is False
    assert consumer["auto.offset.reset"] == "earliest"


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("partitions=zero", "not a int"),
        ("partitions=0", "must be positive"),
        ("compression=brotli", "compression"),
        ("nonsense=1", "unknown Kafka URL option"),
        ("create_topics=maybe", "not a bool"),
        ("group_protocol=eager", "classic or consumer"),
    ],
)
def test_bad_options_are_one_line_errors(query: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words) as caught:
        KafkaOptions.from_url(BrokerURL.parse(f"kafka://u:pw-secret@h:9092?{query}"))
    assert "pw-secret" not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_retry_levels_round_up_and_cap() -> None:
    assert topics.retry_level(None) == topics.retry_level(0) == 0
    assert topics.retry_level(0.5) == 1
    assert topics.retry_level(1.0) == 1
    assert topics.retry_level(11) == 3
    assert topics.retry_level(10**9) == len(topics.RETRY_LEVELS) - 1
    assert topics.source_of("orders.retry.3") == "orders"
    assert topics.source_of("orders.retry") == "orders.retry"
    assert topics.topology("orders.dlq", "eventwire-dlq") == ["orders.dlq"]
    assert topics.topology("orders", None) == ["orders", "orders.dlq"]
    assert "orders.retry.0" in topics.topology("orders", "g")


def test_envelope_round_trip_keeps_every_field() -> None:
    sent = Message(
        body=b"\x00\xff raw",
        key="k-1",
        headers={"tenant": "acme", "x-note": "ünï"},
        content_type="application/x-thing",
        correlation_id="c",
        causation_id="d",
    )
    record = envelope.encode(sent, attempt=3, due=123.5, group="billing")
    got = envelope.decode("t", 0, 7, record.key, record.value, record.headers, record.timestamp_ms)
    assert got.message == sent
    assert (got.attempt, got.due, got.group) == (3, 123.5, "billing")


def test_foreign_record_gets_a_stable_id_and_defaults() -> None:
    got = envelope.decode("t", 2, 41, None, None, [(h.ATTEMPT, b"bad")], 1_700_000_000_000)
    assert got.message.id == "t-2-41"
    assert got.message.body == b""
    assert got.attempt == 1
    assert got.message.timestamp == 1_700_000_000.0


def test_shuffled_completion_with_many_partitions() -> None:
    rng = random.Random(7)
    progress = {p: PartitionProgress(epoch=p) for p in range(4)}
    open_offsets = {p: list(range(100)) for p in range(4)}
    for p in range(4):
        for offset in open_offsets[p]:
            progress[p].handed(offset, 1)
    pairs = [(p, o) for p in range(4) for o in range(100)]
    rng.shuffle(pairs)
    finished: dict[int, set[int]] = {p: set() for p in range(4)}
    for p, o in pairs:
        progress[p].finished(o)
        finished[p].add(o)
        point = progress[p].commit_point()
        assert point is not None
        assert all(x in finished[p] for x in range(point)), "committed past unfinished work"


def test_client_errors_are_scrubbed_with_the_shared_url_scrubber() -> None:
    from confluent_kafka import KafkaError, KafkaException

    from eventwire.brokers.kafka.errors import translate

    url = BrokerURL.parse("kafka://app:hunter2@127.0.0.1:9092")
    text = "SASL authentication of app with password hunter2 failed"
    error = translate(KafkaException(KafkaError(KafkaError._FAIL, text)), "connecting", url)
    message = str(error)
    assert "hunter2" not in message
    assert message.startswith("connecting on kafka at kafka://app:***@127.0.0.1:9092 failed")
