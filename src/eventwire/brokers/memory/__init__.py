"""Broker layer: the memory adapter package."""
