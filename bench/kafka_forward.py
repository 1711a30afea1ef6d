"""Kafka forwarding, end to end: one file of 200-byte lines -> acknowledged in Kafka (acks=all,
idempotence, zstd), for `opsagent forward` (one process) with each producer backend
(forward.kafka.client = kafka-python, librdkafka), the raw client producers sending the same
lines from memory (the ceiling of each client library), and rsyslog imfile + omkafka on the same
file (peer; scripts/bench-peers-kafka installs it), all in the same run. Each run uses its own
topic on one local broker (scripts/kafka); "done" is the topic's end offset reaching the line
count. The machine is shared: load averages and the whole machine's CPU use during each run are
recorded with the numbers.

    python -m bench.run kafka_forward -- [--lines N] [--skip-rsyslog] [--skip-raw]
                                         [--skip-pipeline] [--clients kafka-python,librdkafka]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench.common import loadavg, ratio, vm_hwm_kib

DESCRIPTION = ("Kafka forwarding file -> acked (200-byte lines, acks=all, zstd): opsagent forward "
               "vs raw kafka-python producer (ceiling) vs rsyslog imfile+omkafka")

ROOT = Path(__file__).resolve().parent.parent
LINE_BYTES = 200
WORDS = ["GET", "POST", "user", "order", "payment", "id=%d", "status=%d", "latency_ms=%d",
         "shard=%d", "trace=%08x", "region=eu-west-1", "service=checkout", "level=ERROR",
         "msg=timeout", "upstream=10.0.0.%d"]

# The raw producer: the same client settings the sink uses (opsagent/sinks/kafka/kafka_python.py),
# lines read into memory first; timing covers send of all + flush.
RAW_SCRIPT = r"""
import json, resource, sys, time
from kafka import KafkaProducer
bootstrap, topic, path, headers = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
explicit = sys.argv[5] == "1"  # partition chosen once and passed, as opsagent's sink does
lines = open(path, "rb").read().split(b"\n")[:-1]
p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                  compression_type="zstd", linger_ms=5, batch_size=262144,
                  max_request_size=1048576)
hdrs = [("node", b"bench-node"), ("file", path.encode()), ("offset", b"1234567"),
        ("timestamp", b"1795677829460")]
c0, t0 = time.process_time(), time.monotonic()
key = b"65024:9981861:57ac04a040598085"
part = None
if explicit:
    from kafka.partitioner.default import murmur2
    parts = sorted(p.partitions_for(topic))
    part = parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)]
for line in lines:
    if headers:
        p.send(topic, key=key, value=line, headers=hdrs, partition=part)
    else:
        p.send(topic, key=key, value=line, partition=part)
p.flush()
t1, c1 = time.monotonic(), time.process_time()
p.close()
print(json.dumps({"secs": t1 - t0, "cpu_secs": c1 - c0,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

# The raw librdkafka producer (confluent-kafka), with the settings of the librdkafka backend
# (opsagent/sinks/kafka/librdkafka.py) and one delivery callback per record, as the sink has.
RAW_RDK_SCRIPT = r"""
import json, resource, sys, time
import confluent_kafka
bootstrap, topic, path = sys.argv[1], sys.argv[2], sys.argv[3]
lines = open(path, "rb").read().split(b"\n")[:-1]
p = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "acks": "all",
                              "enable.idempotence": True, "compression.type": "zstd",
                              "linger.ms": 5, "batch.size": 262144,
                              "partitioner": "murmur2_random",
                              "queue.buffering.max.messages": 2147483647,
                              "queue.buffering.max.kbytes": 2147483647})
p.list_topics(timeout=30)
hdrs = [("node", b"bench-node"), ("file", path.encode()), ("offset", b"1234567"),
        ("timestamp", b"1795677829460")]
acked = [0]
def done(err, msg):
    if err is None:
        acked[0] += 1
c0, t0 = time.process_time(), time.monotonic()
key = b"65024:9981861:57ac04a040598085"
for line in lines:
    p.produce(topic, line, key, on_delivery=done, headers=hdrs)
    p.poll(0)
p.flush(120)
t1, c1 = time.monotonic(), time.process_time()
assert acked[0] == len(lines), acked[0]
print(json.dumps({"secs": t1 - t0, "cpu_secs": c1 - c0,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

# The pipeline's own work without a Kafka client: TailSource -> ForwardPipeline -> KafkaSink with
# a producer that takes each record and reports it delivered (librdkafka's calling convention)
# at the sink's next poll, all on one thread, GC tuned as the agent does. CPU per line of this
# is what opsagent adds to the client's cost; it depends far less on the machine's load than
# the end-to-end rates (no broker, no other thread). Timing starts after start-up.
PIPELINE_SCRIPT = r"""
import json, resource, sys, tempfile, time
import prometheus_client
from opsagent.clock import SystemClock
from opsagent.gc_tuning import tune_after_startup
from opsagent.pipelines.forward import ForwardPipeline
from opsagent.pipelines.forward_config import ForwardConfig
from opsagent.sinks.kafka import KafkaSink, KafkaSinkConfig
from opsagent.sinks.kafka.connect import InlineConnector
from opsagent.sources.tail import TailConfig, TailSource
from opsagent.state.checkpoints import CheckpointStore
path, n = sys.argv[1], int(sys.argv[2])

class Delivered:
    def __init__(self):
        self.waiting, self.n = [], 0
    def send(self, topic, *, key, value, headers, on_done):
        self.waiting.append(on_done)
        self.n += 1
    def poll_error(self):
        done, self.waiting = self.waiting, []
        for on_done in done:
            on_done(None, "message")
    def abort(self):
        pass
    def close(self, timeout):
        pass

state = tempfile.mkdtemp(prefix="bench-pipeline-")
reg = prometheus_client.CollectorRegistry()
clock = SystemClock()
kafka = KafkaSinkConfig(bootstrap_servers=("127.0.0.1:9",), topic="t")
tail = TailConfig(include=(path,))
producer = Delivered()
source = TailSource("p", tail, checkpoints=CheckpointStore(state, "p", registry=reg), clock=clock,
                    registry=reg, static_fields={"node": "bench-node"})
sink = KafkaSink("p", kafka, clock=clock, registry=reg, producer_factory=lambda c: producer,
                 connector=InlineConnector(lambda c: producer), dead_letter_dir=state)
pipe = ForwardPipeline(ForwardConfig(name="p", tail=tail, kafka=kafka), source=source, sink=sink,
                       clock=clock, registry=reg)
pipe.open()
tune_after_startup()
c0, t0 = time.process_time(), time.monotonic()
while producer.n < n or pipe.in_flight_files():
    pipe.step()
t1, c1 = time.monotonic(), time.process_time()
pipe.drain()
print(json.dumps({"secs": t1 - t0, "cpu_secs": c1 - c0,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

RSYSLOG_CONF = """
global(workDirectory="{work}")
module(load="imfile" mode="inotify")
module(load="omkafka")
template(name="msgonly" type="string" string="%rawmsg%")
input(type="imfile" file="{path}" tag="bench" ruleset="kafka" freshStartTail="off"
      readMode="0" maxLinesAtOnce="0" maxSubmitAtOnce="4096")
ruleset(name="kafka" queue.type="LinkedList" queue.size="200000" queue.dequeueBatchSize="4096") {{
  action(type="omkafka" topic="{topic}" broker=["{bootstrap}"] template="msgonly"
         confParam=["compression.codec=zstd", "enable.idempotence=true",
                    "queue.buffering.max.ms=5", "batch.size=262144"]
         topicConfParam=["request.required.acks=-1"])
}}
"""


def make_file(path: Path, n: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    with open(path, "wb") as f:
        buf: list[bytes] = []
        for i in range(n):
            words = []
            size = 11
            while size < LINE_BYTES - 1:
                w = rng.choice(WORDS)
                if "%" in w:
                    w = w % rng.randrange(1 << 16)
                words.append(w)
                size += len(w) + 1
            text = (f"{i:010d} " + " ".join(words))[: LINE_BYTES - 1]
            buf.append(text.ljust(LINE_BYTES - 1).encode() + b"\n")
            if len(buf) >= 10_000:
                f.write(b"".join(buf))
                buf.clear()
        f.write(b"".join(buf))


def start_broker(workdir: Path) -> str:
    out = subprocess.run([str(ROOT / "scripts" / "kafka"), "start", str(workdir)],
                         capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        if line.startswith("bootstrap="):
            return line.split("=", 1)[1]
    raise RuntimeError(f"no bootstrap address from scripts/kafka: {out.stdout} {out.stderr}")


def stop_broker(workdir: Path) -> None:
    subprocess.run([str(ROOT / "scripts" / "kafka"), "stop", str(workdir)], check=False,
                   capture_output=True)


class Topics:
    """Creates topics and reads their end offsets (how many records Kafka acknowledged)."""

    def __init__(self, bootstrap: str) -> None:
        from kafka import KafkaConsumer
        from kafka.admin import KafkaAdminClient, NewTopic

        self._new_topic = NewTopic
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)

    def create(self, name: str) -> None:
        self.admin.create_topics([self._new_topic(name, 1, 1)])
        deadline = time.monotonic() + 30
        while not self.consumer.partitions_for_topic(name):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {name} has no partitions")
            self.consumer.topics()  # refresh metadata
            time.sleep(0.1)

    def count(self, name: str) -> int:
        from kafka import TopicPartition

        tps = [TopicPartition(name, p) for p in self.consumer.partitions_for_topic(name) or ()]
        return sum(self.consumer.end_offsets(tps).values())

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()


def peak_rss_mib(pid: int) -> float | None:
    kib = vm_hwm_kib(pid)
    return None if kib is None else round(kib / 1024, 1)


def measure_process(argv: list[str], topics: Topics, topic: str, n: int, nbytes: int,
                    timeout: float, log_path: Path) -> dict[str, Any]:
    """Start `argv`, wait until `topic` holds n records, sample CPU and peak RSS, stop it."""
    with open(log_path, "wb") as log:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    ps = psutil.Process(proc.pid)
    psutil.cpu_percent(interval=None)  # starts the machine-wide measurement
    done = None
    first = None
    cpu = 0.0
    rss = None
    try:
        while time.monotonic() - t0 < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with {proc.returncode}; see {log_path}")
            ct = ps.cpu_times()
            cpu = ct.user + ct.system
            rss = peak_rss_mib(proc.pid) or rss
            acked = topics.count(topic)
            if first is None and acked > 0:
                first = (time.monotonic() - t0, acked, cpu)
            if acked >= n:
                done = time.monotonic() - t0
                break
            time.sleep(0.05)
    finally:
        machine_busy = psutil.cpu_percent(interval=None)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if done is None:
        return {"error": f"not all {n} lines acknowledged after {timeout}s",
                "acked": topics.count(topic)}
    r = result(n, nbytes, done, cpu, rss)
    # The whole machine's CPU use during the run (all processes, both cores): the process under
    # test, the broker, and whatever else runs on this shared machine.
    r["machine_cpu_busy_pct"] = machine_busy
    if first is not None and done > first[0]:
        # Excluding start-up (interpreter, imports, connect, discovery): comparable to the raw
        # producer, whose timing starts after its set-up.
        r["lines_per_sec_after_first_ack"] = round((n - first[1]) / (done - first[0]))
        # The steady state's CPU per GB (start-up weighs ~0.5 CPU s in a Python process).
        rest_gb = nbytes * (n - first[1]) / n / 1e9
        if rest_gb > 0:
            r["cpu_secs_per_gb_after_first_ack"] = round((cpu - first[2]) / rest_gb, 1)
    return r


def result(n: int, nbytes: int, secs: float, cpu: float, rss: float | None) -> dict[str, Any]:
    return {"secs": round(secs, 3), "lines_per_sec": round(n / secs),
            "mb_per_sec": round(nbytes / secs / 1e6, 2),
            "cpu_secs": round(cpu, 2), "cpu_secs_per_gb": round(cpu / (nbytes / 1e9), 1),
            "peak_rss_mib": rss}


def run_ours(work: Path, bootstrap: str, topics: Topics, path: Path, n: int,
             nbytes: int, client: str = "kafka-python") -> dict[str, Any]:
    topic = f"bench-opsagent-{client}"
    topics.create(topic)
    cfg = work / f"opsagent-{client}.toml"
    cfg.write_text(f"""state_dir = "{work / 'state'}"
[node]
name = "bench-node"
[telemetry]
log_level = "warning"
[[forward]]
name = "bench-{client}"
[forward.tail]
include = ["{path}"]
checkpoint_interval_secs = 1.0
[forward.kafka]
bootstrap_servers = ["{bootstrap}"]
topic = "{topic}"
client = "{client}"
compression = "zstd"
""")
    argv = [str(ROOT / ".venv" / "bin" / "opsagent"), "forward", "--config", str(cfg)]
    r = measure_process(argv, topics, topic, n, nbytes, 600, work / f"opsagent-{client}.log")
    r["client"] = client
    return r


def run_raw_librdkafka(bootstrap: str, topics: Topics, path: Path, n: int,
                       nbytes: int) -> dict[str, Any]:
    topic = "bench-raw-librdkafka"
    topics.create(topic)
    out = subprocess.run([sys.executable, "-c", RAW_RDK_SCRIPT, bootstrap, topic, str(path)],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        return {"error": out.stderr[-2000:]}
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if topics.count(topic) < n:
        return {"error": f"only {topics.count(topic)} of {n} records in {topic}"}
    return result(n, nbytes, r["secs"], r["cpu_secs"], round(r["peak_rss_mib"], 1))


def run_pipeline_only(path: Path, n: int, nbytes: int) -> dict[str, Any]:
    """opsagent's own per-line cost (PIPELINE_SCRIPT): the best of three runs."""
    best: dict[str, Any] | None = None
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", PIPELINE_SCRIPT, str(path), str(n)],
                             capture_output=True, text=True, timeout=600, cwd=ROOT)
        if out.returncode != 0:
            return {"error": out.stderr[-2000:]}
        r = json.loads(out.stdout.strip().splitlines()[-1])
        if best is None or r["cpu_secs"] < best["cpu_secs"]:
            best = r
    assert best is not None
    res = result(n, nbytes, best["secs"], best["cpu_secs"], round(best["peak_rss_mib"], 1))
    res["cpu_us_per_line"] = round(best["cpu_secs"] / n * 1e6, 2)
    return res


def run_raw(bootstrap: str, topics: Topics, path: Path, n: int, nbytes: int,
            headers: bool, explicit_partition: bool = False) -> dict[str, Any]:
    topic = "bench-raw" + ("-headers" if headers else "") + ("-partition" if explicit_partition
                                                             else "")
    topics.create(topic)
    out = subprocess.run([sys.executable, "-c", RAW_SCRIPT, bootstrap, topic, str(path),
                          "1" if headers else "0", "1" if explicit_partition else "0"],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        return {"error": out.stderr[-2000:]}
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if topics.count(topic) < n:
        return {"error": f"only {topics.count(topic)} of {n} records in {topic}"}
    return result(n, nbytes, r["secs"], r["cpu_secs"], round(r["peak_rss_mib"], 1))


def run_rsyslog(work: Path, bootstrap: str, topics: Topics, path: Path, n: int,
                nbytes: int) -> dict[str, Any]:
    rsyslogd = shutil.which("rsyslogd")
    if rsyslogd is None:
        return {"error": "rsyslogd not installed (run scripts/bench-peers-kafka)"}
    topic = "bench-rsyslog"
    topics.create(topic)
    rwork = work / "rsyslog-work"
    rwork.mkdir()
    conf = work / "rsyslog.conf"
    conf.write_text(RSYSLOG_CONF.format(work=rwork, path=path, topic=topic, bootstrap=bootstrap))
    argv = [rsyslogd, "-n", "-f", str(conf), "-i", str(work / "rsyslog.pid")]
    r = measure_process(argv, topics, topic, n, nbytes, 600, work / "rsyslog.log")
    r["version"] = subprocess.run([rsyslogd, "-v"], capture_output=True,
                                  text=True).stdout.splitlines()[0]
    return r


def run(args: list[str]) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="kafka_forward")
    p.add_argument("--lines", type=int, default=500_000)
    p.add_argument("--skip-rsyslog", action="store_true")
    p.add_argument("--skip-raw", action="store_true", help="skip the raw client producers")
    p.add_argument("--skip-pipeline", action="store_true",
                   help="skip the pipeline's own cost without a client")
    p.add_argument("--clients", default="kafka-python,librdkafka",
                   help="opsagent producer backends to run (comma-separated)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    a = p.parse_args(args)
    work = Path(tempfile.mkdtemp(prefix="bench-kafka-forward-"))
    n = a.lines
    path = work / "logs" / "bench.log"   # outside the agent's state_dir (work/state)
    path.parent.mkdir()
    make_file(path, n)
    nbytes = path.stat().st_size
    broker_dir = work / "kafka"
    bootstrap = start_broker(broker_dir)
    out: dict[str, Any] = {"loadavg_at_start": loadavg(), "lines": n, "line_bytes": LINE_BYTES,
                           "file_mb": round(nbytes / 1e6, 1), "acks": "all", "idempotence": True,
                           "compression": "zstd"}
    topics = Topics(bootstrap)
    clients = [c for c in a.clients.split(",") if c]
    try:
        if not a.skip_pipeline:
            out["opsagent_pipeline_without_client"] = run_pipeline_only(path, n, nbytes)
        if not a.skip_raw:
            out["raw_kafka_python_headers_partition"] = run_raw(
                bootstrap, topics, path, n, nbytes, headers=True, explicit_partition=True)
            out["raw_librdkafka_headers"] = run_raw_librdkafka(bootstrap, topics, path, n,
                                                               nbytes)
        os.sync()
        for client in clients:
            out[f"opsagent_{client.replace('-', '_')}"] = run_ours(work, bootstrap, topics, path,
                                                                  n, nbytes, client)
        if not a.skip_rsyslog:
            out["rsyslog"] = run_rsyslog(work, bootstrap, topics, path, n, nbytes)
    finally:
        topics.close()
        stop_broker(broker_dir)
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    out["loadavg_at_end"] = loadavg()
    rs = out.get("rsyslog", {})
    kp = out.get("opsagent_kafka_python", {})
    for client in clients:
        ours = out[f"opsagent_{client.replace('-', '_')}"]
        tag = client.replace("-", "_")
        if rs:
            out[f"ratio_{tag}_vs_rsyslog_lines_per_sec"] = ratio(ours.get("lines_per_sec"),
                                                                  rs.get("lines_per_sec"))
            # > 1 means more CPU per GB than rsyslog (the target is <= 1.5).
            out[f"ratio_{tag}_vs_rsyslog_cpu_per_gb"] = ratio(ours.get("cpu_secs_per_gb"),
                                                               rs.get("cpu_secs_per_gb"))
            out[f"ratio_{tag}_vs_rsyslog_cpu_per_gb_after_first_ack"] = ratio(
                ours.get("cpu_secs_per_gb_after_first_ack"),
                rs.get("cpu_secs_per_gb_after_first_ack"))
    if kp and "opsagent_librdkafka" in out:
        out["ratio_librdkafka_vs_kafka_python_lines_per_sec"] = ratio(
            out["opsagent_librdkafka"].get("lines_per_sec"), kp.get("lines_per_sec"))
    out["targets"] = {"librdkafka_vs_rsyslog_lines_per_sec": 1.0,
                      "librdkafka_vs_rsyslog_cpu_per_gb_at_most": 1.5}
    out["notes"] = ("opsagent and rsyslog times include process start and file discovery; the "
                    "raw producers' exclude their start and reading the file. Each run has its "
                    "own topic on one local broker on the same machine (the broker's CPU is not "
                    "counted in cpu_secs; machine_cpu_busy_pct includes it). Runs are "
                    "sequential in one invocation: kafka-python, librdkafka, rsyslog.")
    return out
