"""Core layer: messages, deliveries, the broker contract, capabilities and errors (stdlib only)."""
