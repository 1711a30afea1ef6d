"""Durable agent state kept under the agent's state directory (never in watched log dirs)."""
