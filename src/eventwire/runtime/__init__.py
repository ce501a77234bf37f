"""Runtime layer: ``App``, its subscribers, the consumer loop and graceful shutdown."""
