"""Subcommands of the opsagent CLI: each module wires one job from its config."""
