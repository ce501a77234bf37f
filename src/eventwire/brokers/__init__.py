"""Broker layer: one package per broker, each importing core plus its one client library."""
