"""Tests: BrokerURL parsing and that passwords never reach str(), repr() or errors."""

from __future__ import annotations

import pytest

from eventwire.core.errors import ConfigurationError
from eventwire.core.url import REDACTED, BrokerURL, mask, redact

SECRET = "s3cr3t-p4ss"


def test_parse_fields() -> None:
    url = BrokerURL.parse(f"AMQP://user:{SECRET}@Host.example:5673/vhost?heartbeat=10&x=y")
    assert url.scheme == "amqp"
    assert url.host == "host.example"
    assert url.port == 5673
    assert url.username == "user"
    assert url.path == "/vhost"
    assert url.query == {"heartbeat": "10", "x": "y"}
    assert url.password == SECRET
    assert url.secret().endswith("?heartbeat=10&x=y")
    assert SECRET in url.secret()


@pytest.mark.parametrize(
    "raw",
    [
        f"redis://:{SECRET}@localhost:6379/0",
        f"amqp://guest:{SECRET}@localhost/",
        f"nats://u:{SECRET}@h1:4222",
    ],
)
def test_str_and_repr_hide_the_password(raw: str) -> None:
    url = BrokerURL.parse(raw)
    for text in (str(url), repr(url), f"{url}", f"{url!r}", str([url])):
        assert SECRET not in text
        assert REDACTED in text


def test_without_password_nothing_is_masked() -> None:
    assert str(BrokerURL.parse("memory://app")) == "memory://app"
    assert str(BrokerURL.parse("amqp://user@host/")) == "amqp://user@host/"
    assert BrokerURL.parse("memory://").host is None


@pytest.mark.parametrize(
    "raw",
    ["not a url", f"user:{SECRET}@host", f"redis://u:{SECRET}@host:notaport/0", ""],
)
def test_bad_urls_raise_configuration_error_without_password(raw: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        BrokerURL.parse(raw)
    assert SECRET not in str(info.value)
    assert info.value.__cause__ is None or SECRET not in str(info.value.__cause__)


def test_redact_is_safe_on_anything() -> None:
    assert redact("plain text") == "plain text"
    assert redact(f"x://u:{SECRET}@h") == f"x://u:{REDACTED}@h"
    assert SECRET not in redact(f"http://u:{SECRET}@[bad")
    assert redact("x://u@h") == "x://u@h"
    assert redact(f"user:{SECRET}@host:1") == f"user:{REDACTED}@host:1"
    assert redact("someone@example.com") == "someone@example.com"


def test_scrub_masks_this_urls_password_and_any_url_credentials() -> None:
    url = BrokerURL.parse("redis://app:Canary-9@h:6379/0")
    assert url.scrub("auth failed with Canary-9") == f"auth failed with {REDACTED}"
    assert "Canary-9" not in url.scrub("redis://app:Canary-9@h:6379/0")
    assert BrokerURL.parse("memory://").scrub("nothing secret") == "nothing secret"
    # Another URL quoted inside a client's message: its password is masked too.
    quoted = url.scrub("redirected to redis://ops:Other-7@peer:6379/0 and amqp://u:p@x/ too")
    assert (
        quoted == f"redirected to redis://ops:{REDACTED}@peer:6379/0 and amqp://u:{REDACTED}@x/ too"
    )
    assert url.scrub("mail admin@example.com at 10:30") == "mail admin@example.com at 10:30"


def test_mask_replaces_a_secret_only_when_there_is_one() -> None:
    assert mask("pw s3cret here", "s3cret") == f"pw {REDACTED} here"
    assert mask("pw s3cret here", None) == "pw s3cret here"
    assert mask("pw s3cret here", "") == "pw s3cret here"
