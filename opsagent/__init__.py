"""opsagent: a node-level ops agent for Kubernetes (cron, rotation, statistics, forwarding)."""

__version__ = "0.1.0"
