"""The agent's main loop: start, reload (only what changed; a bad config keeps the old one),
restart of a dead component after its backoff (fake clock), concurrent drain within the deadline,
liveness while Kafka is down, and the state-directory lock.

Components are fakes injected through `Agent._build` (a subclass), except in the liveness test,
which runs a real forward pipeline against a Kafka address where nothing listens."""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import prometheus_client
import pytest

from opsagent.app import (
    CONFIG_CHANGED,
    CONFIG_SETTLE_SECS,
    RESTART_BACKOFF_SECS,
    SUPERVISE_SECS,
    Agent,
    wanted_components,
)
from opsagent.clock import FakeClock, SystemClock
from opsagent.commands.agent import AgentLockHeld, lock_state_dir
from opsagent.components import ForwardComponent, ProfileComponent
from opsagent.config import schema
from opsagent.reload import Key
from opsagent.telemetry.http import Health, TelemetryServer
from tests.fixtures.services import free_port

DEADLINE = 7.0


def config_text(tmp: Path, *, interval: int = 10, keep: int = 5, kafka_port: int = 9,
                state_dir: str | None = None, drain: float = DEADLINE) -> str:
    return f"""
state_dir = "{state_dir or tmp / 'state'}"
drain_deadline_secs = {drain}

[cron]
crontabs = ["{tmp / 'crontab'}"]

[[rotate]]
name = "apps"
directories = ["{tmp}/logs"]
keep = {keep}

[[profile]]
name = "shop"
preset = "motan"
interval_secs = {interval}
[profile.tail]
include = ["{tmp}/profile/*.log"]
[profile.statsd]
port = 9

[[forward]]
name = "critical"
drain_timeout_secs = 2.0
[forward.tail]
include = ["{tmp}/critical/*.log"]
[forward.kafka]
bootstrap_servers = ["127.0.0.1:{kafka_port}"]
topic = "critical-logs"
connect_timeout_ms = 500
retry_backoff_base_secs = 0.1
retry_backoff_max_secs = 0.5
"""


class FakeComponent:
    """Records its lifecycle; `stop` can be made to wait on a barrier shared by all fakes."""

    def __init__(self, key: Key, config: Any, barrier: threading.Barrier | None) -> None:
        self.key = key
        self.config = config
        self.barrier = barrier
        self.started = False
        self.stopped_with: float | None = None
        self.dead = False
        self.failed: BaseException | None = None

    def start(self) -> None:
        self.started = True

    def stop(self, timeout_secs: float) -> bool:
        self.stopped_with = timeout_secs
        if self.barrier is not None:
            try:
                # Passes only when every component's stop runs at the same time: a drain that
                # stopped them one after another would break the barrier.
                self.barrier.wait(timeout=min(timeout_secs, 10.0))
            except threading.BrokenBarrierError:
                return False
        return True

    def alive(self) -> bool:
        return self.started and self.stopped_with is None and not self.dead


class FakeAgent(Agent):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.built: list[FakeComponent] = []
        self.barrier: threading.Barrier | None = None
        self.fail_build: set[Key] = set()

    def _build(self, key: Key, effective: Any) -> Any:
        if key in self.fail_build:
            raise ValueError("cannot build")
        comp = FakeComponent(key, effective, self.barrier)
        self.built.append(comp)
        return comp

    @property
    def fakes(self) -> dict[Key, FakeComponent]:
        out = {}
        for key, comp in self.components.items():
            assert isinstance(comp, FakeComponent)
            out[key] = comp
        return out


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[FakeAgent, Path, FakeClock]]:
    path = tmp_path / "opsagent.toml"
    path.write_text(config_text(tmp_path))
    (tmp_path / "crontab").write_text("")    # validated on every reload, as at start
    clock = FakeClock()
    agent = FakeAgent(str(path), schema.load(str(path)), clock=clock,
                      registry=prometheus_client.CollectorRegistry(),
                      health=Health(clock.monotonic), env={"NODE_NAME": "n1"}, reaper=None)
    yield agent, path, clock


def reloads(agent: Agent, result: str) -> float:
    value = agent.registry.get_sample_value("opsagent_config_reloads_total", {"result": result})
    return value or 0.0


def test_start_builds_every_job_and_is_ready(setup: tuple[FakeAgent, Path, FakeClock]) -> None:
    agent, _, _ = setup
    agent.start()
    assert set(agent.components) == {("cron", "crontabs"), ("rotate", "apps"),
                                     ("profile", "shop"), ("forward", "critical")}
    assert all(c.started for c in agent.built)
    assert agent.health.ready() == (True, "ok")
    # Node identity from the downward-API environment reaches the pipelines' effective config.
    assert agent.fakes[("forward", "critical")].config.static_fields == (("node", "n1"),)


def test_reload_restarts_only_the_changed_section(
        setup: tuple[FakeAgent, Path, FakeClock], tmp_path: Path) -> None:
    agent, path, _ = setup
    agent.start()
    before = agent.fakes
    path.write_text(config_text(tmp_path, interval=5))
    assert agent.reload() is True
    after = agent.fakes
    changed = ("profile", "shop")
    assert after[changed] is not before[changed]
    assert before[changed].stopped_with == DEADLINE      # drained before the new one started
    assert after[changed].started and after[changed].config.section.interval_secs == 5
    for key in before.keys() - {changed}:
        assert after[key] is before[key], key            # the same running object
        assert before[key].stopped_with is None, key
    assert reloads(agent, "applied") == 1
    assert agent.cfg.profile[0].interval_secs == 5


def test_reload_with_nothing_changed_touches_nothing(
        setup: tuple[FakeAgent, Path, FakeClock]) -> None:
    agent, _, _ = setup
    agent.start()
    before = agent.fakes
    assert agent.reload() is True
    assert agent.fakes == before
    assert all(c.stopped_with is None for c in before.values())


@pytest.mark.parametrize("bad", [
    pytest.param("state_dir = [", id="invalid-toml"),
    pytest.param("bogus_key = 1\n", id="unknown-key"),
    pytest.param("", id="state-dir-moved"),
])
def test_reload_rejects_bad_config_and_keeps_the_old(
        setup: tuple[FakeAgent, Path, FakeClock], tmp_path: Path, bad: str) -> None:
    agent, path, _ = setup
    agent.start()
    before = agent.fakes
    old_cfg = agent.cfg
    if bad:
        path.write_text(config_text(tmp_path, interval=5) + bad)
    else:   # valid on its own, but the lock and checkpoints cannot move under a running agent
        path.write_text(config_text(tmp_path, interval=5, state_dir=str(tmp_path / "other")))
    assert agent.reload() is False
    assert agent.cfg is old_cfg
    assert agent.components == before
    assert all(c.stopped_with is None for c in before.values())
    assert reloads(agent, "rejected") == 1 and reloads(agent, "applied") == 0


def test_dead_component_is_restarted_after_the_backoff(
        setup: tuple[FakeAgent, Path, FakeClock]) -> None:
    agent, _, clock = setup
    agent.start()
    key = ("forward", "critical")
    dead = agent.fakes[key]
    dead.dead = True
    agent._check_components()                       # noticed now, restart due after the backoff
    clock.advance(RESTART_BACKOFF_SECS - 0.1)
    agent._check_components()
    assert agent.components[key] is dead
    clock.advance(0.2)
    agent._check_components()
    fresh = agent.fakes[key]
    assert fresh is not dead and fresh.started and fresh.alive()
    assert dead.stopped_with is not None
    assert agent.registry.get_sample_value("opsagent_component_restarts_total",
                                           {"kind": "forward"}) == 1
    others = [c for k, c in agent.fakes.items() if k != key]
    assert all(c.stopped_with is None for c in others)


def test_the_main_loop_sleeps_until_its_next_deadline(
        setup: tuple[FakeAgent, Path, FakeClock]) -> None:
    """Idle cost (issue 12): no 1 s tick; the loop wakes for a restart's backoff, for a
    restarted component to count as up, and at the latest after SUPERVISE_SECS."""
    agent, _, clock = setup
    agent.start()
    assert agent._sleep_secs() == SUPERVISE_SECS
    key = ("forward", "critical")
    agent.fakes[key].dead = True
    agent._check_components()                       # seen dead: restart due after the backoff
    clock.advance(1.0)
    assert agent._sleep_secs() == pytest.approx(RESTART_BACKOFF_SECS - 1.0)
    clock.advance(RESTART_BACKOFF_SECS)
    agent._check_components()                       # restarted: up once it ran a backoff
    assert agent._sleep_secs() == pytest.approx(RESTART_BACKOFF_SECS)
    clock.advance(RESTART_BACKOFF_SECS)
    agent._check_components()
    assert agent._sleep_secs() == SUPERVISE_SECS


def test_a_component_thread_that_dies_wakes_the_main_loop(tmp_path: Path) -> None:
    """A component failing on its own thread puts COMPONENT_EXITED on the agent's queue (the
    loop no longer polls every second); one stopped on purpose does not."""
    from opsagent.components import _Threaded

    class Dies(_Threaded):
        def body(self, stop: threading.Event) -> None:
            raise RuntimeError("boom")

    class Waits(_Threaded):
        def body(self, stop: threading.Event) -> None:
            stop.wait()

    got: list[str] = []
    dies = Dies(("forward", "x"), lambda: got.append("exited"))
    dies.start()
    assert dies._thread is not None
    dies._thread.join(10)
    assert got == ["exited"] and isinstance(dies.failed, RuntimeError)
    waits = Waits(("rotate", "y"), lambda: got.append("stopped"))
    waits.start()
    assert waits.stop(10)
    assert got == ["exited"]


def test_drain_stops_every_component_concurrently(
        setup: tuple[FakeAgent, Path, FakeClock]) -> None:
    agent, _, _ = setup
    agent.barrier = threading.Barrier(4)
    agent.start()
    comps = list(agent.fakes.values())
    assert len(comps) == 4
    assert agent.drain() == 0
    assert [c.stopped_with for c in comps] == [DEADLINE] * 4
    assert not agent.barrier.broken       # all four were in stop() at once
    assert agent.components == {}
    assert agent.health.ready() == (False, "draining")


def test_component_that_cannot_start_is_retried_after_the_backoff(
        setup: tuple[FakeAgent, Path, FakeClock]) -> None:
    agent, _, clock = setup
    key = ("profile", "shop")
    agent.fail_build = {key}
    agent.start()
    assert key not in agent.components and len(agent.components) == 3
    agent._check_components()                     # first seen missing: retry due later
    clock.advance(RESTART_BACKOFF_SECS + 0.1)
    agent._check_components()                     # retried, fails again: a new backoff
    assert key not in agent.components
    agent.fail_build = set()
    clock.advance(RESTART_BACKOFF_SECS - 0.2)
    agent._check_components()
    assert key not in agent.components
    clock.advance(0.3)
    agent._check_components()
    assert agent.fakes[key].started
    assert len(agent.built) == 4                  # the others were never rebuilt


def test_run_loop_reloads_on_sighup_and_file_change_then_drains(
        setup: tuple[FakeAgent, Path, FakeClock], tmp_path: Path) -> None:
    agent, path, clock = setup
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(agent.run()), daemon=True)
    t.start()
    wait_for(lambda: len(agent.components) == 4, "start")
    path.write_text(config_text(tmp_path, interval=5))
    agent.events.put(signal.SIGHUP)
    wait_for(lambda: reloads(agent, "applied") == 1, "SIGHUP reload")
    path.write_text(config_text(tmp_path, interval=5, keep=3))
    agent.events.put(CONFIG_CHANGED)
    settle_until(agent, clock, lambda: reloads(agent, "applied") == 2, "file-change reload")
    assert agent.cfg.rotate[0].keep == 3
    agent.events.put(CONFIG_CHANGED)       # a hint without a content change: no reload
    agent.events.put(signal.SIGTERM)
    t.join(30)
    assert result == [0]
    assert reloads(agent, "applied") == 2
    assert all(c.stopped_with is not None for c in agent.built)


def test_rejected_content_is_not_retried_on_every_change_event(
        setup: tuple[FakeAgent, Path, FakeClock], tmp_path: Path) -> None:
    agent, path, clock = setup
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(agent.run()), daemon=True)
    t.start()
    wait_for(lambda: len(agent.components) == 4, "start")
    path.write_text(config_text(tmp_path) + "bogus_key = 1\n")
    for _ in range(3):                     # a ConfigMap swap makes several events
        agent.events.put(CONFIG_CHANGED)
    settle_until(agent, clock, lambda: reloads(agent, "rejected") == 1, "the rejection")
    for _ in range(3):                     # the same bad content again: not re-counted
        agent.events.put(CONFIG_CHANGED)
    settle_until(agent, clock, lambda: agent._settle.due is None, "the settled file")
    agent.events.put(signal.SIGHUP)        # an explicit reload does retry
    path_fixed = config_text(tmp_path, keep=2)
    wait_for(lambda: reloads(agent, "rejected") == 2, "the SIGHUP retry")
    path.write_text(path_fixed)
    agent.events.put(CONFIG_CHANGED)       # new content: reloaded
    settle_until(agent, clock, lambda: reloads(agent, "applied") == 1, "the fixed config")
    agent.events.put(signal.SIGTERM)
    t.join(30)
    assert result == [0]
    assert reloads(agent, "rejected") == 2
    assert agent.cfg.rotate[0].keep == 2


def settle_until(agent: Agent, clock: FakeClock, cond: Any, what: str,
                 timeout: float = 60.0) -> None:
    """Let the fake clock run through the config file's settle period until `cond`."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        clock.advance(CONFIG_SETTLE_SECS / 2)
        agent.events.put("wake")           # any event makes the loop look again
        time.sleep(0.02)


def wait_for(cond: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_healthz_stays_ok_while_kafka_is_down(tmp_path: Path) -> None:
    """A real forward pipeline whose broker address has nothing listening: the line is read and
    retried, the agent is alive and ready, and draining returns within the deadline."""
    (tmp_path / "critical").mkdir()
    (tmp_path / "critical" / "a.log").write_text("CRITICAL one\n")
    path = tmp_path / "opsagent.toml"
    path.write_text(config_text(tmp_path, kafka_port=free_port(), drain=3.0))
    cfg = schema.load(str(path))
    cfg = schema.AgentConfig(state_dir=cfg.state_dir, drain_deadline_secs=3.0,
                             forward=cfg.forward)      # only the forwarder: cheap and real
    registry = prometheus_client.CollectorRegistry()
    clock = SystemClock()
    health = Health(clock.monotonic)
    server = TelemetryServer("127.0.0.1:0", registry, health)
    server.start()
    agent = Agent(str(path), cfg, clock=clock, registry=registry, health=health, env={},
                  reaper=None)
    stop = threading.Event()
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(agent.run(stop)), daemon=True)
    t.start()
    try:
        wait_for(lambda: sum(agent.undelivered().values()) > 0, "the line to be pending")
        assert _get(server.port, "/healthz") == 200
        assert _get(server.port, "/readyz") == 200
        assert agent.components[("forward", "critical")].alive()
    finally:
        stop.set()
        t.join(30)
        server.stop()
    assert result == [0]
    assert health.ready() == (False, "draining")


def test_second_lock_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    fd = lock_state_dir(str(tmp_path))
    try:
        with pytest.raises(AgentLockHeld, match=f"held by pid {os.getpid()}"):
            lock_state_dir(str(tmp_path))
    finally:
        os.close(fd)
    os.close(lock_state_dir(str(tmp_path)))   # released with its fd: a restart may take it



@pytest.mark.parametrize(("own", "deadline", "expected"), [
    pytest.param(30.0, 25.0, 23.0, id="capped-below-agent-deadline"),
    pytest.param(5.0, 25.0, 5.0, id="own-shorter-kept"),
    pytest.param(30.0, 1.5, 0.0, id="tiny-deadline"),
])
def test_forwarder_drain_fits_in_the_agent_deadline(tmp_path: Path, own: float, deadline: float,
                                                    expected: float) -> None:
    """The forwarder waits for acks at most until shortly before the agent's drain deadline,
    so it still closes the sink and saves its checkpoints before the process exits."""
    path = tmp_path / "opsagent.toml"
    path.write_text(config_text(tmp_path, drain=deadline)
                    .replace("drain_timeout_secs = 2.0", f"drain_timeout_secs = {own}"))
    cfg = schema.load(str(path))
    clock = SystemClock()
    agent = Agent(str(path), cfg, clock=clock, registry=prometheus_client.CollectorRegistry(),
                  health=Health(clock.monotonic), env={}, reaper=None)
    key = ("forward", "critical")
    comp = agent._build(key, wanted_components(cfg, {})[key])
    assert isinstance(comp, ForwardComponent)
    assert comp.pipeline.cfg.drain_timeout_secs == expected
    assert comp.spec.section.drain_timeout_secs == own      # what a reload compares is unchanged


def gauge(agent: Agent, name: str, labels: dict[str, str] | None = None) -> float | None:
    return agent.registry.get_sample_value(name, labels or {})


def test_non_utf8_config_is_a_rejected_reload_not_a_crash(
        setup: tuple[FakeAgent, Path, FakeClock], tmp_path: Path) -> None:
    """`# café` saved as Latin-1: the agent used to die with a UnicodeDecodeError."""
    agent, path, _ = setup
    agent.start()
    before = agent.fakes
    good = config_text(tmp_path)
    path.write_bytes(good.encode() + "# café\n".encode("latin-1"))
    assert agent.reload() is False
    assert agent.components == before
    assert all(c.stopped_with is None for c in before.values())
    ready, why = agent.health.ready()
    line = good.count("\n") + 1
    assert not ready
    assert why == (f"config rejected, running the previous one: {path}: not UTF-8 (TOML files "
                   f"must be): invalid byte at line {line}, column 6")
    assert gauge(agent, "opsagent_config_last_reload_successful") == 0
    assert gauge(agent, "opsagent_ready") == 0
    path.write_text(good)                         # fixed: ready again
    assert agent.reload() is True
    assert agent.health.ready() == (True, "ok")
    assert gauge(agent, "opsagent_config_last_reload_successful") == 1
    assert gauge(agent, "opsagent_ready") == 1


def test_reload_runs_the_start_up_validation_before_anything_stops(
        setup: tuple[FakeAgent, Path, FakeClock], tmp_path: Path) -> None:
    """A rotate job now also watching the tree that holds state_dir: refused as at start,
    while the old rotate job keeps running."""
    agent, path, _ = setup
    agent.start()
    before = agent.fakes
    path.write_text(config_text(tmp_path).replace(f'directories = ["{tmp_path}/logs"]',
                                                  f'directories = ["{tmp_path}/logs", '
                                                  f'"{tmp_path}"]'))
    assert agent.reload() is False
    assert agent.components == before
    assert before[("rotate", "apps")].stopped_with is None
    ready, why = agent.health.ready()
    assert not ready and f"{path}: state_dir: " in why
    assert reloads(agent, "rejected") == 1 and reloads(agent, "applied") == 0


def test_reload_rejects_a_crontab_error_like_start_up(
        setup: tuple[FakeAgent, Path, FakeClock], tmp_path: Path) -> None:
    agent, path, _ = setup
    agent.start()
    before = agent.fakes
    path.write_text(config_text(tmp_path, keep=2).replace(
        f'crontabs = ["{tmp_path / "crontab"}"]', f'crontabs = ["{tmp_path / "missing"}"]'))
    assert agent.reload() is False
    assert agent.components == before and agent.cfg.rotate[0].keep == 5
    assert f"{tmp_path / 'missing'}:0: cannot read crontab" in agent.health.ready()[1]


def test_http_listen_cannot_move_on_reload(
        setup: tuple[FakeAgent, Path, FakeClock], tmp_path: Path) -> None:
    agent, path, _ = setup
    agent.start()
    path.write_text(config_text(tmp_path) + '[telemetry]\nhttp_listen = "127.0.0.1:9999"\n')
    assert agent.reload() is False
    assert "telemetry.http_listen: cannot change on reload" in agent.health.ready()[1]


def test_a_fifo_as_the_config_is_rejected_without_blocking(
        setup: tuple[FakeAgent, Path, FakeClock]) -> None:
    agent, path, _ = setup
    agent.start()
    path.unlink()
    os.mkfifo(path)
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(agent.reload()), daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "reload blocked on the FIFO"
    assert result == [False]
    assert "not a regular file (a FIFO)" in agent.health.ready()[1]
    assert len(agent.components) == 4


def run_in_thread(agent: Agent) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(agent.run()), daemon=True)
    t.start()
    wait_for(lambda: len(agent.components) == 4, "start")
    return t, result


def test_an_edit_written_in_two_parts_is_applied_once_whole(
        setup: tuple[FakeAgent, Path, FakeClock], tmp_path: Path) -> None:
    agent, path, clock = setup
    t, result = run_in_thread(agent)
    forward = agent.fakes[("forward", "critical")]
    whole = config_text(tmp_path, keep=3)
    half = whole[:whole.index("[[forward]]")]      # parses: a config without the forwarder
    with path.open("w") as f:
        f.write(half)
        f.flush()
        agent.events.put(CONFIG_CHANGED)
        wait_for(agent.events.empty, "the first change event taken")
        time.sleep(0.3)                            # the writer's pause between the parts
        f.write(whole[len(half):])
    agent.events.put(CONFIG_CHANGED)
    settle_until(agent, clock, lambda: reloads(agent, "applied") == 1, "the whole file")
    assert agent.cfg.rotate[0].keep == 3
    assert agent.fakes[("forward", "critical")] is forward   # never stopped by the half file
    assert forward.stopped_with is None
    agent.events.put(signal.SIGTERM)
    t.join(30)
    assert result == [0] and reloads(agent, "applied") == 1


def test_an_empty_file_is_not_applied_over_a_working_config_unless_sighup(
        setup: tuple[FakeAgent, Path, FakeClock]) -> None:
    agent, path, clock = setup
    t, result = run_in_thread(agent)
    before = agent.fakes
    path.write_text("")
    agent.events.put(CONFIG_CHANGED)
    settle_until(agent, clock, lambda: reloads(agent, "rejected") == 1, "the rejection")
    assert agent.fakes == before and all(c.stopped_with is None for c in before.values())
    ready, why = agent.health.ready()
    assert not ready and "would stop every job" in why and "SIGHUP" in why
    # A config without jobs written on purpose is held the same way, until SIGHUP.
    path.write_text(f'state_dir = "{agent.cfg.state_dir}"\n')
    agent.events.put(CONFIG_CHANGED)
    settle_until(agent, clock, lambda: reloads(agent, "rejected") == 2, "the second rejection")
    assert agent.fakes == before
    agent.events.put(signal.SIGHUP)                # the explicit sign
    wait_for(lambda: reloads(agent, "applied") == 1, "the SIGHUP")
    assert agent.components == {}
    assert all(c.stopped_with is not None for c in before.values())
    assert agent.health.ready() == (True, "ok")    # nothing configured, nothing failing
    agent.events.put(signal.SIGTERM)
    t.join(30)
    assert result == [0]


def test_readiness_reports_a_component_that_cannot_run(
        setup: tuple[FakeAgent, Path, FakeClock]) -> None:
    agent, _, clock = setup
    key = ("profile", "shop")
    agent.fail_build = {key}
    agent.start()
    ready, why = agent.health.ready()
    assert not ready and why == "profile:shop not running: cannot build"
    assert gauge(agent, "opsagent_component_up", {"component": "profile", "job": "shop"}) == 0
    assert gauge(agent, "opsagent_component_up", {"component": "rotate", "job": "apps"}) == 1
    agent.fail_build = set()
    agent._check_components()
    clock.advance(RESTART_BACKOFF_SECS + 0.1)
    agent._check_components()                      # started again: not trusted yet
    assert agent.fakes[key].started and not agent.health.ready()[0]
    clock.advance(RESTART_BACKOFF_SECS)
    agent._check_components()                      # ran for a whole backoff: ready
    assert agent.health.ready() == (True, "ok")
    assert gauge(agent, "opsagent_component_up", {"component": "profile", "job": "shop"}) == 1


def test_a_component_that_dies_is_not_ready(setup: tuple[FakeAgent, Path, FakeClock]) -> None:
    agent, _, _ = setup
    agent.start()
    agent.fakes[("rotate", "apps")].dead = True
    agent._check_components()
    ready, why = agent.health.ready()
    assert not ready and why.startswith("rotate:apps not running")
    assert gauge(agent, "opsagent_component_up", {"component": "rotate", "job": "apps"}) == 0


def test_missing_sasl_password_file_makes_the_agent_not_ready(tmp_path: Path) -> None:
    """A real forward pipeline that cannot run at all: /readyz 503 naming it, not 200."""
    (tmp_path / "critical").mkdir()
    path = tmp_path / "opsagent.toml"
    path.write_text(config_text(tmp_path, kafka_port=free_port(), drain=3.0).replace(
        'topic = "critical-logs"',
        'topic = "critical-logs"\nsecurity_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = '
        f'"PLAIN"\nsasl_username = "u"\nsasl_password_file = "{tmp_path}/missing"'))
    cfg = schema.load(str(path))
    cfg = schema.AgentConfig(state_dir=cfg.state_dir, drain_deadline_secs=3.0,
                             forward=cfg.forward)
    registry = prometheus_client.CollectorRegistry()
    clock = SystemClock()
    health = Health(clock.monotonic)
    server = TelemetryServer("127.0.0.1:0", registry, health)
    server.start()
    agent = Agent(str(path), cfg, clock=clock, registry=registry, health=health, env={},
                  reaper=None)
    stop = threading.Event()
    t = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    t.start()
    try:
        wait_for(lambda: "sasl_password_file" in health.ready()[1], "the failure in /readyz")
        assert _get(server.port, "/readyz") == 503
        assert _get(server.port, "/healthz") == 200        # alive: only not ready
        assert registry.get_sample_value(
            "opsagent_component_up", {"component": "forward", "job": "critical"}) == 0
    finally:
        stop.set()
        t.join(30)
        server.stop()


class ReconfigurableFake(FakeComponent):
    """Like CronComponent: takes a changed section in place (or fails to, when told)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.reconfigured: list[Any] = []
        self.fail: OSError | None = None

    def reconfigure(self, section: Any) -> None:
        if self.fail is not None:
            raise self.fail
        self.reconfigured.append(section)


class CronInPlaceAgent(FakeAgent):
    def _build(self, key: Key, effective: Any) -> Any:
        if key[0] != "cron":
            return super()._build(key, effective)
        comp = ReconfigurableFake(key, effective, None)
        self.built.append(comp)
        return comp


@pytest.fixture
def cron_setup(tmp_path: Path) -> tuple[CronInPlaceAgent, Path]:
    path = tmp_path / "opsagent.toml"
    path.write_text(config_text(tmp_path))
    (tmp_path / "crontab").write_text("")
    (tmp_path / "second").write_text("")
    clock = FakeClock()
    agent = CronInPlaceAgent(str(path), schema.load(str(path)), clock=clock,
                             registry=prometheus_client.CollectorRegistry(),
                             health=Health(clock.monotonic), env={}, reaper=None)
    return agent, path


def with_second_crontab(tmp_path: Path) -> str:
    return config_text(tmp_path).replace(
        f'crontabs = ["{tmp_path / "crontab"}"]',
        f'crontabs = ["{tmp_path / "crontab"}", "{tmp_path / "second"}"]')


def test_a_changed_cron_section_is_applied_in_place(
        cron_setup: tuple[CronInPlaceAgent, Path], tmp_path: Path) -> None:
    agent, path = cron_setup
    agent.start()
    cron = agent.components[("cron", "crontabs")]
    assert isinstance(cron, ReconfigurableFake)
    path.write_text(with_second_crontab(tmp_path))
    assert agent.reload() is True
    assert agent.components[("cron", "crontabs")] is cron and cron.stopped_with is None
    assert [tuple(s.section.crontabs) for s in cron.reconfigured] == [
        (str(tmp_path / "crontab"), str(tmp_path / "second"))]
    assert len(agent.built) == 4                   # nothing rebuilt
    assert agent.health.ready() == (True, "ok")


def test_a_cron_section_that_cannot_be_applied_in_place_is_restarted(
        cron_setup: tuple[CronInPlaceAgent, Path], tmp_path: Path) -> None:
    agent, path = cron_setup
    agent.start()
    cron = agent.components[("cron", "crontabs")]
    assert isinstance(cron, ReconfigurableFake)
    cron.fail = OSError(24, "Too many open files")
    path.write_text(with_second_crontab(tmp_path))
    assert agent.reload() is True                  # the agent lives on
    fresh = agent.components[("cron", "crontabs")]
    assert fresh is not cron and cron.stopped_with == DEADLINE and fresh.started
    assert agent.health.ready() == (True, "ok")


class OrderAgent(FakeAgent):
    """Records, for each component started, which components the agent listed at that moment."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.listed_at_start: dict[Key, set[Key]] = {}

    def _build(self, key: Key, effective: Any) -> Any:
        comp = super()._build(key, effective)
        agent = self

        def start() -> None:
            agent.listed_at_start[key] = set(agent.components)
            comp.started = True

        comp.start = start  # type: ignore[method-assign]
        return comp


@pytest.mark.parametrize("when", ["start", "reload"])
def test_forwarders_are_listed_before_a_rotation_starts(tmp_path: Path, when: str) -> None:
    """Rotation asks the forwarders what is undelivered as soon as it starts; a forwarder
    started in the same step (a reload that adds it and changes the rotation) must already be
    listed, or its unread files look delivered."""
    text = config_text(tmp_path, keep=2)
    first = config_text(tmp_path, keep=5)
    first = first[:first.index("[[forward]]")]
    path = tmp_path / "opsagent.toml"
    path.write_text(text if when == "start" else first)
    (tmp_path / "crontab").write_text("")
    clock = FakeClock()
    agent = OrderAgent(str(path), schema.load(str(path)), clock=clock,
                       registry=prometheus_client.CollectorRegistry(),
                       health=Health(clock.monotonic), env={}, reaper=None)
    agent.start()
    if when == "reload":
        assert ("forward", "critical") not in agent.components
        path.write_text(text)
        assert agent.reload()
    assert ("forward", "critical") in agent.listed_at_start[("rotate", "apps")]


def test_a_profile_component_reports_its_pipeline_thread(tmp_path: Path) -> None:
    """alive() asks the pipeline (no reaching into its thread); stop returns within its time."""
    path = tmp_path / "opsagent.toml"
    path.write_text(config_text(tmp_path))
    cfg = schema.load(str(path))
    clock = SystemClock()
    agent = Agent(str(path), cfg, clock=clock, registry=prometheus_client.CollectorRegistry(),
                  health=Health(clock.monotonic), env={}, reaper=None)
    key = ("profile", "shop")
    comp = agent._build(key, wanted_components(cfg, {})[key])
    assert isinstance(comp, ProfileComponent)
    assert not comp.alive()
    comp.start()
    assert comp.alive() and comp.pipeline.alive()
    assert comp.stop(10.0) is True
    assert not comp.alive()
