"""Core layer: broker URLs parsed once, with credentials kept out of every str() and repr()."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import SplitResult, parse_qsl, urlsplit, urlunsplit

from eventwire.core.errors import ConfigurationError

REDACTED = "***"
# "scheme://user:password@" anywhere in a text: a client's message can quote another URL
# than this one (a redirect, a cluster peer, a proxy), whose password ``mask`` cannot know.
_CREDENTIALS_IN_TEXT = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s@/]*@")


@dataclass(frozen=True, slots=True)
class BrokerURL:
    """A parsed broker URL. ``str()`` and ``repr()`` never show the password."""

    _raw: str = field(repr=False)
    scheme: str
    host: str | None
    port: int | None
    username: str | None
    path: str
    query: dict[str, str]

    @classmethod
    def parse(cls, raw: str) -> BrokerURL:
        """Parse ``raw``; raise ``ConfigurationError`` (already redacted) if it is not a URL."""
        if not isinstance(raw, str) or "://" not in raw:
            raise ConfigurationError(
                f"broker URL {redact(str(raw))!r} is not a URL: use scheme://host:port, "
                "for example memory:// or sqlite:///path/to/broker.db"
            )
        try:
            parts = urlsplit(raw)
            port = parts.port
        except ValueError as exc:
            raise ConfigurationError(
                f"broker URL {redact(raw)!r} is malformed ({_clean(exc)}): check host and port"
            ) from None
        return cls(
            raw,
            parts.scheme.lower(),
            parts.hostname,
            port,
            parts.username,
            parts.path,
            dict(parse_qsl(parts.query)),
        )

    @property
    def password(self) -> str | None:
        """The password, for the adapter only; never log it."""
        return urlsplit(self._raw).password

    def secret(self) -> str:
        """The full URL with credentials, for handing to a client library."""
        return self._raw

    def scrub(self, text: str) -> str:
        """``text`` (a client's message, say) with any URL credentials in it and this URL's
        password masked: what every adapter shows of a client error."""
        return mask(_CREDENTIALS_IN_TEXT.sub(rf"\1{REDACTED}@", redact(text)), self.password)

    def __str__(self) -> str:
        return redact(self._raw)

    def __repr__(self) -> str:
        return f"BrokerURL({redact(self._raw)!r})"


def _clean(exc: Exception) -> str:
    # urllib's messages can quote the netloc, which holds the password.
    return "invalid port" if "port" in str(exc).lower() else "cannot parse"


def mask(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` (if there is one) replaced by ``***``."""
    return text.replace(secret, REDACTED) if secret else text


def redact(raw: str) -> str:
    """``raw`` with any password replaced by ``***``; safe on anything, URL or not."""
    try:
        parts: SplitResult = urlsplit(raw)
    except ValueError:
        return REDACTED if "@" in raw else raw
    netloc = parts.netloc
    if "@" not in netloc and "@" in raw and "://" not in raw:
        # No scheme ("user:pass@host"): urlsplit sees no netloc, yet a password may be there.
        userinfo, _, rest = raw.rpartition("@")
        user = userinfo.split(":", 1)[0]
        return f"{user}:{REDACTED}@{rest}" if ":" in userinfo else raw
    if "@" not in netloc:
        return raw
    userinfo, _, hostport = netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    masked = f"{user}:{REDACTED}@{hostport}" if ":" in userinfo else f"{user}@{hostport}"
    return urlunsplit(parts._replace(netloc=masked))
