"""The fault timeline of a chaos run as a pure function of the seed: `make_plan(seed, secs, ...)`
gives the same steps for the same seed, so a failing run is replayed with `--chaos-seed N`
(the interleaving with the agent's own threads differs, the faults and their order do not).

Every plan holds at least one of each fault kind, shuffled and spaced at random:
- a broker outage longer than the delivery timeout, with two renames of one log (the second
  renames a file created during the outage), a second rename of a rotated file, a deletion of a
  rotated file while the agent runs but cannot deliver, and an agent SIGKILL inside the outage
  (a rename while it is down), sometimes a SIGTERM at its end;
- an agent SIGTERM and restart (a line may be half written: it must still arrive whole);
- an agent SIGKILL with, while it is down, two renames (again of a file created while down), a
  copytruncate and a deletion; and a plain agent SIGKILL;
- a copytruncate, a rename, a second rename and a deletion while everything runs;
then random extra faults until the run's length is used up.
"""

from __future__ import annotations

import dataclasses
import random

KINDS = ("agent_kill", "agent_term", "broker_outage", "rename", "rename_again", "copytruncate",
         "delete")


@dataclasses.dataclass(frozen=True)
class Step:
    """One fault. `at`: planned start in seconds, from the start of the chaos phase (or of the
    enclosing step for steps in `during`). `secs`: down time (agent_kill, agent_term) or outage
    length (broker_outage). `target`: writer index. `pick`: which candidate file, as a fraction of
    the sorted candidates (rename_again, delete)."""

    at: float
    kind: str
    secs: float = 0.0
    target: int = 0
    pick: float = 0.0
    during: tuple[Step, ...] = ()

    def describe(self) -> str:
        args = {"agent_kill": f"down {self.secs:.1f}s", "agent_term": f"down {self.secs:.1f}s",
                "broker_outage": f"{self.secs:.1f}s",
                "rename": f"writer {self.target}", "copytruncate": f"writer {self.target}",
                "rename_again": f"pick {self.pick:.2f}", "delete": f"pick {self.pick:.2f}"}
        return f"+{self.at:.1f}s {self.kind}({args[self.kind]})"


def _outage(rng: random.Random, at: float, writers: int, delivery_timeout_secs: float) -> Step:
    secs = rng.uniform(1.3, 2.2) * delivery_timeout_secs
    w = rng.randrange(writers)
    during = [
        Step(rng.uniform(0.1, 0.3) * secs, "rename", target=w),
        # the file created by that rename is renamed away too, before the broker returns
        Step(rng.uniform(0.35, 0.45) * secs, "rename", target=w),
        Step(rng.uniform(0.45, 0.5) * secs, "rename_again", pick=rng.random()),
        # a rotated file deleted while the agent runs but cannot deliver it
        Step(rng.uniform(0.5, 0.6) * secs, "delete", pick=rng.random()),
        Step(rng.uniform(0.6, 0.7) * secs, "agent_kill", secs=rng.uniform(0.5, 2.0),
             during=(Step(0.1, "rename", target=rng.randrange(writers)),)),
    ]
    if rng.random() < 0.5:
        during.append(Step(rng.uniform(0.75, 0.85) * secs, "copytruncate",
                           target=rng.randrange(writers)))
    if rng.random() < 0.3:
        # SIGTERM with Kafka down: the drain ends at its deadline, nothing is lost
        during.append(Step(0.9 * secs, "agent_term", secs=rng.uniform(0.2, 1.0)))
    return Step(at, "broker_outage", secs=secs, during=tuple(sorted(during, key=lambda s: s.at)))


def _agent_kill(rng: random.Random, at: float, writers: int, busy: bool) -> Step:
    secs = rng.uniform(1.5, 4.0) if busy else rng.uniform(0.2, 2.0)
    during: list[Step] = []
    if busy:
        w = rng.randrange(writers)
        during = [Step(0.1, "rename", target=w),
                  Step(0.3 * secs, "rename", target=w),   # created and renamed while down
                  Step(0.5 * secs, "copytruncate", target=rng.randrange(writers)),
                  Step(0.7 * secs, "delete", pick=rng.random())]
    return Step(at, "agent_kill", secs=secs, during=tuple(during))


def _simple(rng: random.Random, at: float, kind: str, writers: int) -> Step:
    return Step(at, kind, target=rng.randrange(writers), pick=rng.random())


def _cost(step: Step, broker_start_secs: float) -> float:
    """Rough wall time of a step, to fit the plan into the run's length."""
    if step.kind == "broker_outage":
        return step.secs + broker_start_secs
    return step.secs


def make_plan(seed: int, secs: float, *, writers: int, delivery_timeout_secs: float,
              broker_start_secs: float = 20.0) -> list[Step]:
    rng = random.Random(seed)
    mandatory = ["broker_outage", "agent_kill_busy", "agent_kill", "agent_term", "copytruncate",
                 "rename", "rename_again", "delete"]
    rng.shuffle(mandatory)
    steps: list[Step] = []
    t = rng.uniform(2.0, 4.0)   # the agent delivers for a moment first
    while mandatory or t < secs:
        kind = mandatory.pop() if mandatory else rng.choices(
            ["broker_outage", "agent_kill_busy", "agent_kill", "agent_term", "copytruncate",
             "rename", "rename_again", "delete"], weights=[1, 2, 2, 1, 2, 3, 1, 2])[0]
        if not mandatory and kind == "broker_outage" and t + 25 > secs:
            kind = "agent_kill"   # no outage too close to the end: the run would overrun
        if kind == "broker_outage":
            step = _outage(rng, t, writers, delivery_timeout_secs)
        elif kind == "agent_term":
            step = Step(t, "agent_term", secs=rng.uniform(0.2, 2.0))
        elif kind.startswith("agent_kill"):
            step = _agent_kill(rng, t, writers, busy=kind == "agent_kill_busy")
        else:
            step = _simple(rng, t, kind, writers)
        steps.append(step)
        t += _cost(step, broker_start_secs) + rng.uniform(1.0, 5.0)
    return steps


def describe(plan: list[Step], indent: str = "") -> list[str]:
    out = []
    for s in plan:
        out.append(indent + s.describe())
        out.extend(describe(list(s.during), indent + "    "))
    return out


def replay_command(seed: int, client: str | None) -> str:
    """The command that runs seed `seed` again (against backend `client` only, if named)."""
    cmd = f"pytest tests/integration/chaos --chaos-seed {seed}"
    return cmd if client is None else f"OPSAGENT_TEST_KAFKA_CLIENTS={client} {cmd}"
