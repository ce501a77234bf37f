"""Broker layer: the nats adapter package."""
