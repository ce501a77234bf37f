"""Broker layer: the redis adapter package."""
