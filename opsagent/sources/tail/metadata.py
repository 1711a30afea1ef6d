"""Kubernetes metadata of a tailed file: node/pod/namespace passed in by the command (which
reads the downward-API environment) overlaid with the named groups of the path pattern."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType


class PathFields:
    """Computes the fields of a file once, when it is first opened (a rotated name keeps the
    fields of the name it was found under)."""

    def __init__(self, static: Mapping[str, str], path_pattern: str) -> None:
        self._static = dict(static)
        self._regex = re.compile(path_pattern) if path_pattern else None
        self._empty: Mapping[str, str] = MappingProxyType(self._static)

    def for_path(self, path: str) -> Mapping[str, str]:
        """Static fields overlaid with the pattern's named groups (groups win: in a DaemonSet
        the agent's pod is not the pod that wrote the file). Read-only, shared per file."""
        if self._regex is None:
            return self._empty
        m = self._regex.search(path)
        if m is None:
            return self._empty
        fields = dict(self._static)
        for name, value in m.groupdict().items():
            if value is not None:
                fields[name] = value
        return MappingProxyType(fields)
