"""Testing layer: the broker conformance suite every adapter's claims are proven by.

After Watermill's ``pubsub/tests``: one set of cases, run against every broker profile. A
profile's ``Capabilities`` decide which cases run; a case whose capability is not claimed
skips with "profile does not claim <capability>", and a claimed one must pass, so
over-claiming fails the suite (tests/conformance/test_memory.py proves that with a broker
that lies). Basic cases run for every profile, at-most-once ones included.

Plugging a broker in (conventions: tests/conformance/conftest.py)::

    import pytest
    from eventwire.testing.conformance import ConformanceSuite, Harness, URLHarness

    pytestmark = [pytest.mark.conformance, pytest.mark.integration, pytest.mark.redis]

    class TestRedisStreamsConformance(ConformanceSuite):
        PROFILE = "redis-streams"  # catalog profile name; the meta-test checks coverage

        @pytest.fixture
        async def harness(self) -> AsyncIterator[Harness]:
            harness = URLHarness("redis://127.0.0.1:6379/0")
            yield harness
            await harness.aclose()

``Harness`` (harness.py) is the hook: ``profile``, ``async open() -> Broker`` (a NEW
connected client per call; the suite closes what it opens), ``scale``, and for the
reconnect cases ``supports_restart`` + ``restart_broker()`` and ``upstream`` +
``url_via(host, port)`` (the URL rewritten to go through a TCP fault proxy). ``URLHarness``
derives all of that from a URL; subclass ``Harness`` for private servers or embedded brokers.

Each case receives ``ctx`` (context.py ``CaseContext``): its own unique topic
(``ctx.topic``, ``topic_for(case_name)``), ``ctx.open()``, ``ctx.group()``, ``ctx.scale``.
Cases never assert on sleeps: helpers.py (``collect``, ``collect_until``, ``next_delivery``,
``Collector``, ``wait_until``) poll with bounded deadlines and fail with an AssertionError
naming what was missing; ``expect_nothing`` watches for ``scale.quiet`` seconds where only an
absence can be checked. Fence messages (published last, awaited) prove "nothing else came".

Scale: quick by default; EVENTWIRE_CONFORMANCE_SCALE=full (or EVENTWIRE_TEST_SCALE=full)
runs the FULL sizes (message counts, topics, per-key runs, failures, longer deadlines).

Capability -> cases (``requires(...)`` on each case; ``suite.capability_map()`` lists it):

* every profile: test_publish_subscribe_envelope (id, key, headers, content type,
  correlation/causation id, timestamp, empty and non-UTF-8 bodies),
  test_publish_from_one_client_consume_from_another, test_topic_isolation,
  test_many_topics_concurrently, test_settle_once, test_client_errors_translated
  (ClosedError after aclose, InvalidHeaderError / MessageTooLargeError / ConfigurationError
  with nothing of the call sent), test_publisher_close_flushes, test_concurrent_close,
  test_subscription_ends_on_close_while_waiting, test_harness_matches_profile
* consumer_groups: test_competing_consumers_share_load, test_each_group_gets_every_message
* broadcast: test_broadcast_without_group
* persistent + consumer_groups: test_continue_after_subscriber_close,
  test_publisher_close_flushes_to_new_client
* replay + consumer_groups: test_new_group_reads_history
* redelivery + at_least_once: test_redelivery_after_nack, test_continue_after_many_errors,
  and with consumer_groups test_unsettled_returned_on_subscription_exit
* delayed_redelivery + at_least_once: test_delayed_redelivery (loop time, not earlier)
* dead_letter: test_dead_letter_reaches_dlq (byte-identical body, reason
  and detail headers, read with DEAD_LETTER_GROUP after the fact); with consumer_groups
  test_each_group_dead_letters_its_own_copy (two groups, two dead letters, same id)
* exclusive_in_flight: test_no_next_message_before_ack (prefetch=1)
* ordered_per_key: test_order_per_key (16 keys, one call and concurrent per-key publishers);
  + ordered_across_members + consumer_groups: test_order_per_key_across_members
* publish_dedup: test_publish_dedup
* survives_restart + persistent + consumer_groups (harness "restart"):
  test_confirmed_publishes_survive_restart (all clients closed and the broker restarted;
  an embedded broker's harness restarts by closing every client and reopening its store)
* reconnects / survives_restart (and harness abilities "restart", "proxy"): the cases in
  reconnect_cases.py (``ReconnectCases``, included in ``ConformanceSuite``)

``publish_confirms`` has no case of its own: the flush and reconnect cases rely on it.
"""

from __future__ import annotations

from eventwire.testing.conformance.context import CaseContext, CaseFixtures, requires
from eventwire.testing.conformance.harness import FULL, QUICK, Harness, Scale, URLHarness
from eventwire.testing.conformance.helpers import (
    Collector,
    collect,
    collect_until,
    expect_nothing,
    next_delivery,
    topic_for,
)
from eventwire.testing.conformance.suite import ConformanceSuite
from eventwire.testing.helpers import wait_until

__all__ = [
    "FULL",
    "QUICK",
    "CaseContext",
    "CaseFixtures",
    "Collector",
    "ConformanceSuite",
    "Harness",
    "Scale",
    "URLHarness",
    "collect",
    "collect_until",
    "expect_nothing",
    "next_delivery",
    "requires",
    "topic_for",
    "wait_until",
]
