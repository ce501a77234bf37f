"""Tests: conventions for the broker conformance modules in this directory.

How to add a broker profile here (the profiles meta-test enforces the first three points):

1. One module per adapter, ``tests/conformance/test_<broker>.py``, with
   ``pytestmark = [pytest.mark.conformance, ...]`` (network brokers add ``integration`` and
   their broker marker, e.g. ``pytest.mark.redis``; reconnect cases add ``reconnect`` per case).
2. For EVERY catalog profile the adapter ships (``catalog.profiles()``), a class
   ``class Test<Profile>Conformance(ConformanceSuite)`` with ``PROFILE = "<profile name>"``
   (exactly ``BrokerProfile.name``, e.g. "redis-streams", "nats-core").
3. A ``harness`` fixture on the class (or module) returning an
   ``eventwire.testing.conformance.Harness`` whose ``profile.name == PROFILE`` (the suite's
   ``test_harness_matches_profile`` checks it). ``URLHarness("redis://127.0.0.1:6379/0")`` is
   enough for most network brokers; subclass ``Harness`` for private servers and restarts.
4. Never point a harness at a shared service for restarts: restart cases need a private
   server (``supports_restart = True``); the shared ones must never be stopped.

Example::

    pytestmark = [pytest.mark.conformance, pytest.mark.integration, pytest.mark.redis]

    class TestRedisStreamsConformance(ConformanceSuite):
        PROFILE = "redis-streams"

        @pytest.fixture
        def harness(self) -> Harness:
            return URLHarness("redis://127.0.0.1:6379/0")

Sizes: EVENTWIRE_CONFORMANCE_SCALE=full (or EVENTWIRE_TEST_SCALE=full) runs the full sizes.
"""
