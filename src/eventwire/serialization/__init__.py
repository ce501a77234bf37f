"""Serialization layer: payload encoding on publish and decoding by handler annotation."""
