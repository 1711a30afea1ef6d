"""gorun's self-metrics, registered in a CollectorRegistry the caller owns (never the global one).

Names follow the project's `opsagent_<thing>_<unit>_total` rule with the thing `cron`, so the
same series come out of standalone `gorun` and of the agent. The `job` label is the job id
(`FILE:LINE`); it is bounded: past `max_jobs` distinct ids, further jobs share `job="_other"`.
Series are created when a job first runs, so idle jobs cost nothing.

    opsagent_cron_runs_total{job}                 runs started
    opsagent_cron_failures_total{job}             runs that failed (exit != 0, signal, no start)
    opsagent_cron_timeouts_total{job}             runs stopped by their timeout
    opsagent_cron_skipped_overlaps_total{job}     runs skipped because the last one still ran
    opsagent_cron_missed_runs_total{job}          scheduled runs that did not happen
    opsagent_cron_running_jobs{job}               runs in progress
    opsagent_cron_run_duration_seconds{job}       histogram of run durations
    opsagent_cron_output_dropped_lines_total{job} output lines dropped or truncated
    opsagent_cron_clock_jumps_total{direction}    wall-clock steps detected (forward / backward)
    opsagent_cron_reloads_total{result}           crontab reloads (ok / error / unchanged)
    opsagent_cron_orphans_reaped_total            orphaned processes reaped (PID 1 / subreaper)
    opsagent_cron_jobs                            jobs scheduled (including @reboot)
    opsagent_cron_start_delay_seconds             histogram: due time to process started/released
    opsagent_cron_next_run_timestamp_seconds{job} when the job fires next (Unix time; none: never)
    opsagent_cron_last_run_timestamp_seconds{job} when the job's last run started (Unix time)
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OTHER = "_other"
START_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5, float("inf"))
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, float("inf"))


class Metrics:
    def __init__(self, registry: CollectorRegistry, *, max_jobs: int = 1000) -> None:
        self.max_jobs = max_jobs
        self._known: set[str] = set()
        self._lock = threading.Lock()
        p = "opsagent_cron_"
        r = registry
        self.runs = Counter(p + "runs", "Job runs started", ["job"], registry=r)
        self.failures = Counter(p + "failures", "Job runs that failed", ["job"], registry=r)
        self.timeouts = Counter(p + "timeouts", "Runs stopped by their timeout", ["job"],
                                registry=r)
        self.skipped_overlaps = Counter(
            p + "skipped_overlaps", "Runs skipped: the previous run still ran", ["job"], registry=r)
        self.missed = Counter(p + "missed_runs", "Scheduled runs that did not happen",
                              ["job"], registry=r)
        self.running = Gauge(p + "running_jobs", "Job runs in progress", ["job"], registry=r)
        self.duration = Histogram(p + "run_duration_seconds", "Job run duration", ["job"],
                                  buckets=DURATION_BUCKETS, registry=r)
        self.dropped_lines = Counter(p + "output_dropped_lines",
                                     "Output lines dropped or truncated", ["job"], registry=r)
        self.clock_jumps = Counter(p + "clock_jumps", "Wall-clock steps detected",
                                   ["direction"], registry=r)
        self.reloads = Counter(p + "reloads", "Crontab reloads", ["result"], registry=r)
        self.orphans_reaped = Counter(p + "orphans_reaped", "Orphaned processes reaped", registry=r)
        self.jobs = Gauge(p + "jobs", "Jobs scheduled (including @reboot)", registry=r)
        self.start_delay = Histogram(
            p + "start_delay_seconds", "From a run's due time to its process starting",
            buckets=START_BUCKETS, registry=r)
        self.next_run = Gauge(p + "next_run_timestamp_seconds",
                              "When the job fires next (Unix time)", ["job"], registry=r)
        self.last_run = Gauge(p + "last_run_timestamp_seconds",
                              "When the job's last run started (Unix time)", ["job"], registry=r)
        self._next_labels: set[str] = set()

    def set_next_runs(self, fires: dict[str, float | None]) -> None:
        """Next fire times by job id; jobs gone from the schedule (or that never fire again,
        @reboot included) lose their series."""
        labels = {self.job(jid): t for jid, t in fires.items() if t is not None}
        labels.pop(OTHER, None)
        for gone in self._next_labels - labels.keys():
            self.next_run.remove(gone)
        for label, t in labels.items():
            self.next_run.labels(label).set(t)
        self._next_labels = set(labels)

    def job(self, job_id: str) -> str:
        """The label value for a job id, bounded to `max_jobs` distinct values."""
        with self._lock:
            if job_id in self._known:
                return job_id
            if len(self._known) < self.max_jobs:
                self._known.add(job_id)
                return job_id
        return OTHER
