"""Prometheus metrics of the Kafka sink, registered once per registry and labelled by pipeline."""

from __future__ import annotations

import prometheus_client as pc

from opsagent.telemetry.registry import PerRegistry


class _Families:
    def __init__(self, r: pc.CollectorRegistry) -> None:
        p = ["pipeline"]
        self.sent = pc.Counter("opsagent_kafka_records_sent",
                               "Records handed to the Kafka client (re-sends included)", p,
                               registry=r)
        self.acked = pc.Counter("opsagent_kafka_records_acked",
                                "Records acknowledged by Kafka (acks=all)", p, registry=r)
        self.bytes = pc.Counter("opsagent_kafka_bytes",
                                "Record value bytes handed to the Kafka client", p, registry=r)
        self.retries = pc.Counter("opsagent_kafka_retries",
                                  "Records re-sent after a failed delivery", p, registry=r)
        self.errors = pc.Counter("opsagent_kafka_errors",
                                 "Failed deliveries and connection attempts by kind",
                                 ["pipeline", "kind"], registry=r)
        self.dead_letters = pc.Counter(
            "opsagent_kafka_dead_letter",
            "Records Kafka can never accept, written to the dead-letter file, by reason "
            "(write_failed: could not be written; generation_discarded: an old file dropped)",
            ["pipeline", "reason"], registry=r)
        self.producer_resets = pc.Counter(
            "opsagent_kafka_producer_resets",
            "Producers aborted after a failure and replaced (each followed by a backoff)", p,
            registry=r)
        self.outages = pc.Counter(
            "opsagent_kafka_outages",
            "Times Kafka became unreachable for the pipeline (no producer could be created, a "
            "delivery failed for want of the cluster, or no acknowledgement for 5 s)", p,
            registry=r)
        self.unreachable = pc.Gauge("opsagent_kafka_unreachable",
                                    "1 while Kafka is unreachable for the pipeline, else 0", p,
                                    registry=r)
        self.inflight = pc.Gauge("opsagent_kafka_inflight_bytes",
                                 "Bytes held by the sink: submitted, not yet acknowledged",
                                 p, registry=r)


_families = PerRegistry(_Families)


class KafkaMetrics:
    """The sink's children of the shared metric families."""

    def __init__(self, f: _Families, pipeline: str) -> None:
        self.sent = f.sent.labels(pipeline)
        self.acked = f.acked.labels(pipeline)
        self.bytes = f.bytes.labels(pipeline)
        self.retries = f.retries.labels(pipeline)
        self.errors = f.errors  # .labels(pipeline, kind)
        self.dead_letters = f.dead_letters  # .labels(pipeline, reason)
        self.producer_resets = f.producer_resets.labels(pipeline)
        self.inflight_bytes = f.inflight.labels(pipeline)
        self.outages = f.outages.labels(pipeline)
        self.unreachable = f.unreachable.labels(pipeline)

    @classmethod
    def for_registry(cls, registry: pc.CollectorRegistry, pipeline: str) -> KafkaMetrics:
        return cls(_families(registry), pipeline)
