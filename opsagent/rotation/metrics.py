"""Prometheus metrics of the rotation job (labels: policy, and a quota group per directory/pod;
the series of a group are removed when it disappears, so labels stay bounded by the live tree)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from opsagent.telemetry.registry import PerRegistry


class RotationMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        p = "opsagent_rotate_"
        self.passes = Counter(f"{p}passes", "Rotation passes run", ["policy"], registry=registry)
        self.rotations = Counter(f"{p}rotations", "Active logs rotated", ["policy", "method"],
                                 registry=registry)
        self.compressions = Counter(f"{p}compressions", "Archives compressed", ["policy"],
                                    registry=registry)
        self.compress_in = Counter(f"{p}compress_in_bytes", "Bytes read by compression",
                                   ["policy"], registry=registry)
        self.compress_out = Counter(f"{p}compress_out_bytes", "Bytes written by compression",
                                    ["policy"], registry=registry)
        self.deletions = Counter(f"{p}deletions", "Archives deleted", ["policy", "reason"],
                                 registry=registry)
        self.truncations = Counter(f"{p}truncations", "Active logs truncated at the hard limit",
                                   ["policy"], registry=registry)
        self.usage = Gauge(f"{p}quota_usage_bytes", "Allocated bytes per quota group",
                           ["policy", "group"], registry=registry)
        self.breaches = Counter(f"{p}quota_breaches",
                                "Passes ending over a quota limit, per quota group",
                                ["policy", "group", "limit"], registry=registry)
        self.forced_undelivered = Counter(
            f"{p}forced_undelivered_bytes",
            "Bytes not yet delivered by the forwarder that the hard limit forced us to touch",
            ["policy"], registry=registry)
        self.refused = Counter(f"{p}refused", "Entries refused as unsafe", ["policy", "reason"],
                               registry=registry)
        self.errors = Counter(f"{p}errors", "Failed actions", ["policy", "action"],
                              registry=registry)


# One RotationMetrics per registry, shared by every policy (and outliving reloads).
rotation_metrics = PerRegistry(RotationMetrics)
