"""`opsagent forward --config FILE`: the agent (`opsagent run`) running only the [[forward]]
pipelines of the config: the same signal handling, drain within drain_deadline_secs, restart of
a failed pipeline after a backoff, reload on SIGHUP or a config change, and /healthz /readyz
/metrics on telemetry.http_listen.

Exit codes: 0 after a drain, 1 when another agent holds the state directory, 2 for a bad config
or one without [[forward]]. Node identity: [node] keys, else the downward-API env NODE_NAME,
POD_NAME, POD_NAMESPACE.
"""

from __future__ import annotations

import argparse

from opsagent.commands import agent
from opsagent.commands.jobs import JobSelection


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("forward", help="the agent running only the [[forward]] pipelines "
                       "(tail files, forward their lines to Kafka) until SIGTERM")
    p.add_argument("--config", required=True, metavar="FILE", help="agent TOML config")
    p.set_defaults(func=agent.run, jobs=JobSelection("opsagent forward", "forward"))
