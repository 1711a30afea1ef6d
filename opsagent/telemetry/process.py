"""psutil-based gauges: the agent's own CPU, memory, open files and threads, and the disk usage
of the volumes it watches (what an ops container is expected to report about its node)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence

import psutil
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class ProcessCollector(Collector):
    """Collected at scrape time; a vanished volume is skipped, never an error."""

    def __init__(self, volumes: Sequence[str] = ()) -> None:
        self._proc = psutil.Process(os.getpid())
        self._volumes = tuple(volumes)

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        p = self._proc
        with p.oneshot():
            cpu = p.cpu_times()
            mem = p.memory_info()
            fds = p.num_fds()
            threads = p.num_threads()
        c = CounterMetricFamily("opsagent_process_cpu_seconds", "Agent CPU time",
                                labels=["mode"])
        c.add_metric(["user"], cpu.user)
        c.add_metric(["system"], cpu.system)
        yield c
        yield GaugeMetricFamily("opsagent_process_resident_memory_bytes", "Agent RSS",
                                value=mem.rss)
        yield GaugeMetricFamily("opsagent_process_open_fds", "Agent open file descriptors",
                                value=fds)
        yield GaugeMetricFamily("opsagent_process_threads", "Agent threads", value=threads)
        yield from self._disks()

    def _disks(self) -> Iterator[GaugeMetricFamily]:
        used = GaugeMetricFamily("opsagent_volume_used_bytes", "Used bytes of a watched volume",
                                 labels=["path"])
        total = GaugeMetricFamily("opsagent_volume_size_bytes", "Size of a watched volume",
                                  labels=["path"])
        for path in self._volumes:
            try:
                u = psutil.disk_usage(path)
            except OSError:
                continue
            used.add_metric([path], u.used)
            total.add_metric([path], u.total)
        yield used
        yield total


def register(registry: CollectorRegistry, volumes: Iterable[str] = ()) -> ProcessCollector:
    collector = ProcessCollector(tuple(volumes))
    registry.register(collector)
    return collector
