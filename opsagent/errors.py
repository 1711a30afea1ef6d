"""The agent's error hierarchy, drawn once.

    OpsagentError
    ├── ConfigError          bad configuration; carries the key path (and file:line when known)
    ├── RetriableError       an I/O failure worth retrying with backoff (network, broker, disk full)
    └── FatalError           an I/O failure that retrying cannot fix (auth, record too large, bug)

Every I/O boundary sorts the exceptions of its library into RetriableError / FatalError in one
place (for example the Kafka sink's `classify`), so the rest of the code only sees these.
"""

from __future__ import annotations


class OpsagentError(Exception):
    """Base class of every error the agent raises on purpose."""


class ConfigError(OpsagentError):
    """A configuration problem. `path` is the dotted key path, e.g. `forward[0].kafka.acks`."""

    def __init__(self, path: str, message: str, *, file: str | None = None) -> None:
        self.path = path
        self.message = message
        self.file = file
        where = f"{file}: " if file else ""
        super().__init__(f"{where}{path}: {message}" if path else f"{where}{message}")


class ConfigErrors(OpsagentError):
    """Several configuration problems found in one pass (all are reported, not only the first)."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class RetriableError(OpsagentError):
    """A failure that may succeed later (retry with backoff)."""


class FatalError(OpsagentError):
    """A failure that retrying will not fix."""
