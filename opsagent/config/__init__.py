"""Configuration: TOML (stdlib tomllib) turned into frozen dataclasses, errors naming key paths."""

from opsagent.config.loader import from_dict, load_toml

__all__ = ["from_dict", "load_toml"]
