"""One chaos run: the writers, the fault executor and its bookkeeping (what the docs allow to
lose, what adds to the duplicate bound); `ChaosRun.report()` is the failure message (seed,
losses, file histories, the agent's log lines about them, the fault timeline)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

from tests.fixtures.kafka import KafkaBroker
from tests.fixtures.services import free_port
from tests.integration.chaos.chaos_agent import (
    PIPELINE,
    PODS,
    RunAgent,
    Settings,
    checkpoint_offsets,
    config_text,
)
from tests.integration.chaos.chaos_plan import KINDS, Step, replay_command
from tests.integration.chaos.chaos_writers import AppWriter, FileRec, Registry


class ChaosRun:
    """Executes a plan against the real agent and broker, recording what happened when."""

    def __init__(self, seed: int, root: Path, broker: KafkaBroker, topic: str,
                 settings: Settings) -> None:
        self.seed = seed
        self.root = root
        self.broker = broker
        self.topic = topic
        self.s = settings
        self.t0 = time.monotonic()
        self.logs = root / "logs"
        self.state = root / "state"
        self.registry = Registry(self.t0)
        self.timeline: list[str] = []
        self.kills_ms: list[int] = []
        self.outages: list[float] = []
        self.copy_lines = 0
        self.may_lose_from: dict[str, int] = {}
        self.deleted_while_up: list[tuple[FileRec, int]] = []   # (file, seq count) to settle
        self.renames = 0
        self.faults: Counter[str] = Counter()   # fault kind -> times done (skipped ones not)
        self.terms = 0
        self.problems: list[str] = []   # found while the faults run (exit codes)
        self.agent_should_run = False
        self.names: dict[tuple[int, int], str] = {}
        self._tracking_done = threading.Event()
        self._tracker = threading.Thread(target=self._track_names_loop, name="chaos-names",
                                         daemon=True)
        self.http_port = free_port()
        for pod in PODS:
            (self.logs / pod).mkdir(parents=True)
        cfg = root / "opsagent.toml"
        cfg.write_text(config_text(root, self.state, self.http_port, broker.bootstrap, topic,
                                   settings))
        self.agent = RunAgent(cfg, root / "agent.log", self.http_port)
        self.writers = [
            AppWriter(i, self.logs / PODS[i % len(PODS)] / f"app{i}.log", self.registry,
                      seed=seed * 1000 + i, lines_per_sec=settings.lines_per_sec,
                      partial_prob=settings.partial_prob, gap_max_secs=settings.gap_max_secs)
            for i in range(settings.writers)]

    # -- bookkeeping ------------------------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() - self.t0

    def log(self, what: str) -> None:
        self.timeline.append(f"{self.now():7.1f}s {what}")

    def done(self, kind: str, what: str) -> None:
        self.faults[kind] += 1
        self.log(what)

    def fault_summary(self) -> str:
        """"agent_kill 7, broker_outage 1, ...": the faults this run did, by kind."""
        return ", ".join(f"{k} {self.faults[k]}" for k in KINDS if self.faults[k]) or "none"

    def allow_loss(self, rec: FileRec, first_seq: int, why: str) -> None:
        fid = rec.copy_of or rec.fid
        if first_seq < rec.lines:
            self.may_lose_from[fid] = min(self.may_lose_from.get(fid, first_seq), first_seq)
            self.registry.note(rec, f"loss of seqs >= {first_seq} allowed: {why}")

    def fragments_ok(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for w in self.writers:
            for fid in w.truncated:
                out[fid] = out.get(fid, 0) + 1
        return out

    def check_agent_alive(self) -> None:
        if self.agent.proc is not None and self.agent.proc.poll() is not None:
            raise AssertionError(f"agent exited by itself with {self.agent.proc.returncode}\n"
                                 + self.agent.log_tail())

    def check_agent(self) -> None:
        if self.agent.proc is not None and self.agent.proc.poll() is not None \
                and self.agent_should_run:
            raise AssertionError(f"agent exited by itself with {self.agent.proc.returncode}\n"
                                 + self.agent.log_tail())

    # -- the phases -------------------------------------------------------------------------------

    def start(self) -> None:
        self.log(f"seed {self.seed}, backend {self.s.client}: writers start, agent starts")
        self.agent_should_run = True
        for w in self.writers:
            w.start()
        self._tracker.start()
        self.agent.start()

    def execute(self, plan: list[Step], base: float | None = None) -> None:
        base = self.now() if base is None else base
        for step in plan:
            self.sleep_until(base + step.at)
            self.run_step(step)

    def sleep_until(self, t: float) -> None:
        while (left := t - self.now()) > 0:
            self.check_agent()
            self.agent.ready_since()
            time.sleep(min(left, 0.2))

    def _track_names_loop(self) -> None:
        while not self._tracking_done.wait(0.25):
            try:
                self.track_names()
            except OSError:
                continue

    def track_names(self) -> None:
        """Note each name a writer's file is seen under (the agent's rotations, .zst aside),
        for the file histories of the failure message."""
        for pod in PODS:
            for e in os.scandir(self.logs / pod):
                if e.name.endswith(".zst") or e.name.startswith(("ct-tmp-", ".opsagent-tmp")):
                    continue
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                rec = self.registry.at_inode(st.st_dev, st.st_ino)
                if rec is not None and self.names.get((st.st_dev, st.st_ino)) != e.name:
                    self.names[(st.st_dev, st.st_ino)] = e.name
                    self.registry.note(rec, f"seen as {pod}/{e.name} ({st.st_size} bytes)")

    def run_step(self, step: Step) -> None:
        self.check_agent()
        if step.kind in ("agent_kill", "agent_term"):
            self.stop_agent(step)
        elif step.kind == "broker_outage":
            self.broker_outage(step)
        elif step.kind == "rename":
            self.renames += 1
            w = self.writers[step.target]
            self.done("rename", f"rename: {w.rename_rotate(f'{w.path.name}.t{self.renames}')}")
        elif step.kind == "copytruncate":
            self.renames += 1
            w = self.writers[step.target]
            what, copied = w.copytruncate(f"app{w.idx}-ct{self.renames}.log")
            self.copy_lines += copied
            self.done("copytruncate", f"copytruncate: {what}")
        elif step.kind == "rename_again":
            self.rename_again(step.pick)
        elif step.kind == "delete":
            self.delete(step.pick)
        else:
            raise AssertionError(f"unknown step {step.kind}")

    def stop_agent(self, step: Step) -> None:
        """SIGKILL (agent_kill) or SIGTERM and wait for its exit (agent_term), faults while it is
        down, restart."""
        if not self.agent.alive():
            self.log(f"{step.kind}: agent not running, skipped")
            return
        self.agent_should_run = False
        if step.kind == "agent_kill":
            self.agent.kill()
            self.kills_ms.append(int(time.time() * 1000))
            self.done("agent_kill",
                      f"agent SIGKILLed (run {self.agent.runs}); down for {step.secs:.1f}s")
        else:
            # SIGTERM before the agent installed its handlers (while Python imports) ends it
            # like a SIGKILL with exit -15: not the drain this step is about. Bounded wait.
            deadline = time.monotonic() + 60
            while self.agent.ready_since() is None and time.monotonic() < deadline:
                self.check_agent_alive()
                time.sleep(0.1)
            try:
                rc = self.agent.terminate(timeout=self.s.drain_deadline_secs + 30)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                rc = -9
                self.problems.append(f"agent run {self.agent.runs} did not exit within "
                                     f"{self.s.drain_deadline_secs + 30:.0f}s of SIGTERM")
            self.terms += 1
            self.done("agent_term", f"agent SIGTERM (run {self.agent.runs}): exit {rc}; down "
                                    f"for {step.secs:.1f}s")
            if rc not in (0, -9):
                self.problems.append(f"agent run {self.agent.runs} exited {rc} on SIGTERM")
        self.settle_deleted_after_kill()
        start = self.now()
        self.execute(list(step.during), base=start)
        self.sleep_until(start + step.secs)
        self.agent.start()
        self.agent_should_run = True
        self.log(f"agent started (run {self.agent.runs})")

    def broker_outage(self, step: Step) -> None:
        self.broker.kill()
        self.outages.append(step.secs)
        self.done("broker_outage", f"broker SIGKILLed for {step.secs:.1f}s "
                                   f"(delivery_timeout_ms {self.s.delivery_timeout_ms})")
        start = self.now()
        self.execute(list(step.during), base=start)
        self.sleep_until(start + step.secs)
        self.broker.start()
        self.log("broker started")

    # -- files ------------------------------------------------------------------------------------

    def rotated_files(self) -> list[tuple[Path, os.stat_result, FileRec]]:
        """Rotated files (names not ending in .log) the writers no longer write, sorted."""
        active = {w.current_inode() for w in self.writers}
        out = []
        for pod in PODS:
            for e in sorted(os.scandir(self.logs / pod), key=lambda e: e.name):
                if (e.name.endswith(".log") or e.name.startswith("ct-tmp-")
                        or not e.is_file(follow_symlinks=False)):
                    continue
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                rec = self.registry.at_inode(st.st_dev, st.st_ino)
                if rec is not None and (st.st_dev, st.st_ino) not in active:
                    out.append((Path(e.path), st, rec))
        return out

    def rename_again(self, pick: float) -> None:
        files = [f for f in self.rotated_files() if not f[0].name.endswith(".zst")]
        if not files:
            self.log("rename_again: no rotated file, skipped")
            return
        path, _, rec = files[int(pick * len(files))]
        new = path.with_name(path.name + ".old")
        os.rename(path, new)
        self.registry.note(rec, f"renamed again by the test to {new.name}")
        self.done("rename_again", f"rename_again: {path.name} ({rec.fid}) -> {new.name}")

    def delete(self, pick: float) -> None:
        """Delete a rotated file. While the agent runs only one that existed for two rescan
        intervals since the agent became ready (docs: a file deleted before the agent could
        discover it may be lost); while it is down any, with the loss the docs allow."""
        files = [f for f in self.rotated_files() if not f[0].name.endswith(".zst")]
        up = self.agent.alive()
        if up:
            ready = self.agent.ready_since()
            margin = 2 * self.s.rescan_interval_secs + 1.0
            up_for = 0.0 if ready is None else time.monotonic() - ready
            files = [f for f in files if min(up_for, time.time() - f[1].st_ctime) > margin]
        if not files:
            self.log(f"delete: no eligible rotated file (agent {'up' if up else 'down'}), "
                     "skipped")
            return
        path, st, rec = files[int(pick * len(files))]
        os.unlink(path)
        lines = st.st_size // rec.line_len
        self.registry.note(rec, f"deleted by the test ({path.name}, {st.st_size} bytes, agent "
                                f"{'running' if up else 'down'})")
        self.done("delete", f"delete: {path.name} ({rec.fid}, {lines} lines) with the agent "
                            f"{'running' if up else 'down'}")
        if up:
            self.deleted_while_up.append((rec, lines))
        else:
            self.allow_deleted_loss(rec, st, "deleted while the agent was down")

    def allow_deleted_loss(self, rec: FileRec, st: os.stat_result, why: str) -> None:
        """docs/delivery.md: a file deleted while the agent is not running loses whatever was
        not yet checkpointed (read now: the agent is down, so this is what it restarts from)."""
        offset = checkpoint_offsets(self.state / f"{PIPELINE}.json").get(
            (st.st_dev, st.st_ino), 0)
        self.allow_loss(rec, rec.seq_at(offset), f"{why}, checkpoint offset {offset}")

    def settle_deleted_after_kill(self) -> None:
        """Files deleted while the agent ran and not yet delivered cannot be read by the next
        agent (after a SIGKILL, or a SIGTERM: the drain does not read them to their end): what
        its checkpoint does not cover may be lost."""
        offsets = checkpoint_offsets(self.state / f"{PIPELINE}.json")
        for rec, _lines in self.deleted_while_up:
            offset = offsets.get((rec.dev, rec.ino), 0)
            self.allow_loss(rec, rec.seq_at(offset),
                            f"deleted while the agent ran, then the agent was SIGKILLed; "
                            f"checkpoint offset {offset}")
        self.deleted_while_up.clear()

    # -- the end ----------------------------------------------------------------------------------

    def finish(self) -> dict[str, int]:
        """Broker and agent up, writers stopped; returns the lines written per file id."""
        if not self.broker.running:
            self.broker.start()
            self.log("broker started (end of plan)")
        if not self.agent.alive():
            self.agent.start()
            self.agent_should_run = True
            self.log("agent started (end of plan)")
        for w in self.writers:
            w.stop()
        self.stop_tracking()
        self.log(f"writers stopped ({sum(w.partials for w in self.writers)} lines were "
                 "written in two pieces)")
        return self.registry.expected()

    def stop_tracking(self) -> None:
        self._tracking_done.set()
        if self._tracker.is_alive():
            self._tracker.join(10)

    def report(self, verdict_text: str, fids: set[str], extra: str = "") -> str:
        hist = []
        names: set[str] = set()
        for fid in sorted(fids):
            rec = self.registry.by_fid.get(fid)
            if rec is not None:
                hist.append(f"  {fid} ({rec.lines} lines, line {rec.line_len} bytes):")
                hist.extend(f"      {h}" for h in rec.history)
                names.update(self.names[k] for k in self.names
                             if (r := self.registry.by_inode.get(k)) is not None
                             and (r.fid == fid or r.copy_of == fid))
        names -= {w.path.name for w in self.writers}   # active names: every file had them
        agent_lines = [ln for ln in self.agent.log_path.read_text(errors="replace").splitlines()
                       if any(f'/{n}"' in ln or f'/{n}.zst"' in ln for n in names)]
        return "\n".join([
            f"chaos seed {self.seed}, backend {self.s.client} "
            f"(replay: {replay_command(self.seed, self.s.client)})",
            verdict_text, extra, f"faults done: {self.fault_summary()}",
            "files involved:", *hist,
            "agent log lines naming their files:", *agent_lines[:60],
            "fault timeline (seconds since start):", *self.timeline,
            f"agent log: {self.agent.log_path}", "agent log tail:", self.agent.log_tail(25)])
