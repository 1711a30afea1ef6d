"""opsagent_forward_lag_bytes{pipeline,file}: read at scrape time from each running pipeline's
pending_bytes(); present from open() until the end of drain(), per file."""

from __future__ import annotations

import prometheus_client

from opsagent.clock import FakeClock
from opsagent.pipelines.forward import ForwardPipeline
from opsagent.pipelines.forward_lag import forward_lag
from tests.unit.opsagent.pipelines.test_forward import FakeSink, FakeSource, config


def lag(reg: prometheus_client.CollectorRegistry) -> dict[tuple[str, str], float]:
    return {(s.labels["pipeline"], s.labels["file"]): s.value
            for fam in reg.collect() if fam.name == "opsagent_forward_lag_bytes"
            for s in fam.samples}


class LaggingSource(FakeSource):
    def __init__(self) -> None:
        super().__init__([])
        self.pending = {"/logs/a.log": 100, "/logs/b.log": 0}

    def pending_bytes(self) -> dict[str, int]:
        return dict(self.pending)


def test_lag_per_file_while_the_pipeline_runs() -> None:
    reg = prometheus_client.CollectorRegistry()
    clock = FakeClock(1000.0)
    source = LaggingSource()
    p = ForwardPipeline(config(), source=source, sink=FakeSink(), clock=clock,  # type: ignore[arg-type]
                        registry=reg, wait=clock.advance)
    assert lag(reg) == {}
    p.open()
    assert lag(reg) == {("crit", "/logs/a.log"): 100, ("crit", "/logs/b.log"): 0}
    source.pending["/logs/a.log"] = 250          # computed at every scrape
    assert lag(reg)[("crit", "/logs/a.log")] == 250
    p.drain()
    assert lag(reg) == {}


def test_a_replaced_pipeline_does_not_remove_its_successor() -> None:
    reg = prometheus_client.CollectorRegistry()
    collector = forward_lag(reg)
    old, new = LaggingSource(), LaggingSource()
    new.pending = {"/logs/c.log": 7}
    collector.add("crit", old.pending_bytes)
    collector.add("crit", new.pending_bytes)      # a reload started the new one first
    collector.remove("crit", old.pending_bytes)   # the old one's drain ends later
    assert lag(reg) == {("crit", "/logs/c.log"): 7}
    collector.remove("crit", new.pending_bytes)
    assert lag(reg) == {}
    assert forward_lag(reg) is collector          # one collector per registry
