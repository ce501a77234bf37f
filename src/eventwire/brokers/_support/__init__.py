"""Broker layer: helpers shared by adapters (lifecycle base, backoff); no client library here."""
