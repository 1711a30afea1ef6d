"""Telemetry: JSON-lines logging and the prometheus_client registry every component reports into."""
