"""Metric families created once per CollectorRegistry: several pipelines (and the components a
reload rebuilds) share one registry and tell themselves apart by labels, so a component asks for
its families instead of registering them again (which prometheus_client refuses)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry

T = TypeVar("T")


class PerRegistry(Generic[T]):
    """`families = PerRegistry(MyMetrics)`; then `families(registry)` is the one MyMetrics of
    that registry, created on first use."""

    def __init__(self, factory: Callable[[CollectorRegistry], T]) -> None:
        self._factory = factory
        self._made: weakref.WeakKeyDictionary[CollectorRegistry, T] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def __call__(self, registry: CollectorRegistry) -> T:
        with self._lock:
            m = self._made.get(registry)
            if m is None:
                m = self._made[registry] = self._factory(registry)
            return m
