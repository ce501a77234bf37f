"""Broker layer: the sqlite adapter package."""
