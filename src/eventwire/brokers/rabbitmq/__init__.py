"""Broker layer: the rabbitmq adapter package."""
