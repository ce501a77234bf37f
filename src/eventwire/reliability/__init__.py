"""Reliability layer: retry, dead-letter and idempotency policies the runtime applies."""
