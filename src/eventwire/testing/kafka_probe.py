"""Testing layer: "does this Kafka broker answer a metadata request?", stdlib only.

Used by ``scripts/services.sh`` (run as a script by the system Python, before any venv exists)
and by the private Kafka spawner in ``eventwire.testing.spawn_kafka``. An open port is not
readiness: a KRaft broker accepts connections before it has registered with its controller,
and until then a client's first metadata request lists no broker. Ready means a Metadata
response that names at least one broker.

    python3 src/eventwire/testing/kafka_probe.py 127.0.0.1 9092   # exit 0 when ready
"""

from __future__ import annotations

import socket
import struct
import sys

# Metadata v4 is the oldest version Kafka 4.x still serves (KIP-896 removed v0-v3) and the
# newest one with the classic (non-flexible) encoding, so it needs no tagged-field support.
_METADATA_KEY = 3
_METADATA_VERSION = 4
_CLIENT_ID = b"eventwire-probe"


def _request(correlation_id: int) -> bytes:
    body = struct.pack(">hhih", _METADATA_KEY, _METADATA_VERSION, correlation_id, len(_CLIENT_ID))
    # topics = null (all topics), allow_auto_topic_creation = false
    body += _CLIENT_ID + struct.pack(">i?", -1, False)
    return struct.pack(">i", len(body)) + body


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("the broker closed the connection mid-response")
        chunks += chunk
    return bytes(chunks)


def broker_count(host: str, port: int, timeout: float = 2.0) -> int:
    """How many brokers a Metadata response from ``host:port`` lists (OSError when none came)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(_request(correlation_id=1))
        (size,) = struct.unpack(">i", _read_exactly(sock, 4))
        if not 8 <= size <= 16 * 1024 * 1024:
            raise ConnectionError(f"implausible response size {size}")
        payload = _read_exactly(sock, size)
    correlation_id, _throttle_ms, brokers = struct.unpack_from(">iii", payload, 0)
    if correlation_id != 1:
        raise ConnectionError(f"response for correlation id {correlation_id}, expected 1")
    return max(int(brokers), 0)


def is_ready(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when ``host:port`` answers a Metadata request naming at least one broker."""
    try:
        return broker_count(host, port, timeout) > 0
    except (OSError, struct.error):
        return False


if __name__ == "__main__":
    _host, _port = sys.argv[1], int(sys.argv[2])
    sys.exit(0 if is_ready(_host, _port) else 1)
