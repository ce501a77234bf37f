"""Setup layer: requirements -> ranked broker advice -> a scaffolded service (advise, init)."""
