"""Pipelines wire one source through processors to one sink (forward: tail -> Kafka)."""
