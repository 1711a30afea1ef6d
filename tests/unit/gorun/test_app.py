"""GorunApp embedded in a host: run in a thread, stop() drains, shared metrics and reaper."""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry

from gorun.app import GorunApp, GorunOptions
from gorun.metrics import Metrics
from gorun.reaper import ChildReaper
from tests.unit.gorun.rig import Recorder


class Stopped(ChildReaper):
    def __init__(self) -> None:
        super().__init__()
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


def test_embedded_run_stop_and_rebuild_with_shared_metrics(tmp_path: Path) -> None:
    tab = tmp_path / "crontab"
    tab.write_text("@reboot echo embedded\n")
    rec = Recorder()
    job_log = logging.getLogger("gorun.job")
    job_log.addHandler(rec)
    job_log.setLevel(logging.INFO)
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    reaper = Stopped()
    try:
        for round_ in (1, 2):  # a host rebuilding the app on reload reuses the collectors
            app = GorunApp(GorunOptions(paths=(str(tab),), watch=False, reap_orphans=False),
                           registry=registry, metrics=metrics, reaper=reaper,
                           stdout=io.BytesIO(), stderr=io.BytesIO())
            rc: list[int] = []
            t = threading.Thread(target=lambda a=app, out=rc: out.append(a.run()))
            t.start()
            rec.wait_for(lambda rs, n=round_: sum(r["msg"] == "job succeeded" for r in rs) >= n)
            app.stop()
            t.join(30)
            assert rc == [0]
        assert registry.get_sample_value("opsagent_cron_runs_total",
                                         {"job": f"{tab}:1"}) == 2
        assert not reaper.stopped  # the host owns it
    finally:
        job_log.removeHandler(rec)
