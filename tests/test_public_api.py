"""Public API tests: ``eventwire.__all__`` is curated, importable and documented."""

from __future__ import annotations

import inspect

import eventwire

EXPECTED = {
    "App", "AppStats", "BreakerPolicy", "Broker", "BrokerError", "BrokerProfile", "Capabilities",
    "ConfigurationError", "Context", "DEAD_LETTER_GROUP", "DecodeError", "Delivery",
    "Duplicate", "EventwireError", "Guarantee", "Health", "IdempotencyStore",
    "MemoryIdempotencyStore", "Message", "MessageError", "PermanentError", "Publisher",
    "RetryPolicy", "SQLiteIdempotencyStore", "Subscriber", "Support",
    "TransactionalIdempotencyStore", "ValidationError", "__version__", "dead_letter_topic",
    "open_idempotency_store",
}  # fmt: skip


def test_all_is_exactly_the_curated_set() -> None:
    assert set(eventwire.__all__) == EXPECTED
    assert len(eventwire.__all__) == len(set(eventwire.__all__)), "duplicate names in __all__"


def test_every_public_name_resolves_and_classes_and_functions_are_documented() -> None:
    for name in eventwire.__all__:
        value = getattr(eventwire, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"eventwire.{name} has no docstring"


def test_errors_share_one_root() -> None:
    for name in ("BrokerError", "ConfigurationError", "DecodeError", "MessageError",
                 "PermanentError", "ValidationError"):  # fmt: skip
        assert issubclass(getattr(eventwire, name), eventwire.EventwireError)
