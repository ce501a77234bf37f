"""Core layer: the one exception tree every eventwire error belongs to.

    EventwireError
    ├── ConfigurationError        bad URL, unknown scheme, bad option (user can fix it)
    ├── MessageError              a message that cannot be sent as it is
    │   ├── InvalidHeaderError    CR/LF/NUL in a header, non-str header, empty name
    │   └── MessageTooLargeError  body over the profile's limit
    ├── BrokerError               the broker or the connection to it failed
    │   ├── ConnectionLostError   connection gone and not back within the deadline
    │   ├── PublishError          the broker did not confirm a publish (nothing reported as sent)
    │   └── ClosedError           the publisher/subscriber was closed
    ├── DecodeError               a body that is not what its content type says
    │   ├── ValidationError       decodable, but not a valid instance of the handler's model
    │   └── EnvelopeError         (brokers._support.envelope) a broker's bytes are no envelope
    ├── HandlerError
    │   └── PermanentError        raised by a handler: retrying will not help, dead-letter now
    └── EffectEndedTransactionError  (reliability.idempotency) a transactional effect
                                     committed or rolled back the store's transaction itself

Adapters translate their client's exceptions at the boundary into this tree and keep the
original as ``__cause__``; no foreign exception escapes a public call. Every public
exception class eventwire defines sits in this tree (``tests/core/test_errors.py``).
"""

from __future__ import annotations


class EventwireError(Exception):
    """Root of every error eventwire raises."""


class ConfigurationError(EventwireError):
    """A URL, option or file is wrong; the message says what to do."""


class MessageError(EventwireError):
    """A message cannot be published as it is; nothing was sent."""


class InvalidHeaderError(MessageError):
    """A header name or value is not allowed (control characters, wrong type, empty name)."""


class MessageTooLargeError(MessageError):
    """The body exceeds what the broker profile accepts."""


class BrokerError(EventwireError):
    """The broker or the connection to it failed."""


class ConnectionLostError(BrokerError):
    """The connection is down and did not come back within the deadline."""


class PublishError(BrokerError):
    """The broker did not confirm a publish; the message must be treated as not sent."""


class ClosedError(BrokerError):
    """The publisher, subscriber or broker was already closed."""


class DecodeError(EventwireError):
    """A body could not be decoded for its content type."""

    reason = "decode-error"


class ValidationError(DecodeError):
    """A body decoded but failed validation against the handler's model."""

    reason = "validation-error"


class HandlerError(EventwireError):
    """Base for errors handlers raise on purpose."""


class PermanentError(HandlerError):
    """Raised by a handler when retrying cannot help: the message is dead-lettered at once."""
