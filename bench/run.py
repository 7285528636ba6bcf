"""`make bench`: throughput, latency and memory of the services on a real local stack.

Run by deploy/local/bench.sh once its own Kafka + Postgres are up (STACK_NAME=bench). Each
phase uses a fresh namespace (topics, consumer groups, schemas) and starts the services it
measures as separate ``uvicorn --factory`` processes, as tests/conftest.py does:

  (a) baseline    raw aiokafka relay getmany -> send(acks=all, idempotent) -> commit, 6 partitions
  (b) detection   one deployed rule matching 10 %; N domain events pre-published while the
                  trigger-detector is stopped; start it; time until its group committed all and
                  every trigger.detected / trigger.skipped record is on its topic
  (c) e2e         rule with a 2-step webhook chain (cheap local receiver), every event fires;
                  pre-published backlog; run.finished records/s at steady state (10 %..90 %)
  (d) latency     events paced at half of (c) for BENCH_LATENCY_SECONDS; publish -> first
                  step's action.completed (Kafka record timestamp) p50 / p99
  (e) projection  the projector's topics pre-filled from the golden fixtures; start it; time
                  until its six consumer groups committed everything
  (f) rss         VmHWM of every service process, read just before it is stopped

Never asserts: misses are reported. Exit status is non-zero only when the harness could not
measure something (a service did not start, Kafka refused, ...). Sizes come from BENCH_* env
variables (see Config).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import math
import os
import platform
import random
import re
import signal
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg
import automation_shared
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import NewTopic
from automation_shared import topics
from automation_shared.kafka_security import kafka_client_options
from automation_shared.settings import Settings
from automation_shared.testing import bearer, prepare_namespace

from bench.lib import (
    BenchError,
    CpuMeter,
    Kafka,
    Processes,
    ServiceProcess,
    free_port,
    percentile,
    watch,
)

ROOT = Path(__file__).resolve().parents[1]
TENANT = "bench"
RECORD_BYTES = 400

TARGETS = {
    "detection_events_per_s": 3000,
    "detection_ratio_to_baseline": 0.3,
    "e2e_runs_per_s": 500,
    "latency_p99_ms": 50,
    "projection_events_per_s": 5000,
    "rss_mb": 150,
    "schedule_p99_ms": 1000,
    "timer_p99_ms": 1000,
}


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass(frozen=True)
class Config:
    baseline_records: int = env_int("BENCH_BASELINE_RECORDS", 200_000)
    baseline_max_records: int = env_int("BENCH_BASELINE_MAX_RECORDS", 0)  # per getmany; 0: what aiokafka has
    detection_events: int = env_int("BENCH_EVENTS", 40_000)
    e2e_events: int = env_int("BENCH_E2E_EVENTS", 10_000)
    latency_seconds: float = env_float("BENCH_LATENCY_SECONDS", 20)
    latency_rate: float = env_float("BENCH_LATENCY_RATE", 0)  # 0: half of (c)
    projection_runs: int = env_int("BENCH_PROJECTION_RUNS", 8_000)  # 5 records each
    projection_skips: int = env_int("BENCH_PROJECTION_SKIPS", 20_000)  # 1 record each
    phase_seconds: float = env_float("BENCH_PHASE_SECONDS", 100)  # cap of each measured backlog
    max_seconds: float = env_float("BENCH_MAX_SECONDS", 1200)  # later phases are skipped past this
    subjects: int = env_int("BENCH_SUBJECTS", 5_000)
    schedule_rules: int = env_int("BENCH_SCHEDULE_RULES", 10_000)  # each firing every minute
    schedule_minutes: int = env_int("BENCH_SCHEDULE_MINUTES", 2)
    schedule_replicas: int = env_int("BENCH_SCHEDULE_REPLICAS", 3)
    timers: int = env_int("BENCH_TIMERS", 100_000)  # open behaviour timers, due over one minute
    phases: str = os.environ.get("BENCH_PHASES", "baseline,detection,e2e,latency,projection,schedule,timers,rss")
    output: str = os.environ.get("BENCH_OUTPUT", str(ROOT / "bench" / "results" / "latest.json"))
    logs: str = os.environ.get("BENCH_LOGS", str(ROOT / ".local" / "bench" / "logs" / "services"))
    stack_dir: str = os.environ.get("BENCH_STACK_DIR", str(ROOT / ".local" / "bench"))


# ----------------------------------------------------------------------------------- records


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class DomainEvents:
    """~400-byte order.created CloudEvents, keyed ``tenant:subject``, amounts uniform 0..999."""

    def __init__(self, prefix: str, subjects: int, seed: int = 7) -> None:
        self.prefix = prefix
        self.subjects = subjects
        self.rng = random.Random(seed)
        self.now = iso(time.time())
        self._pad = ""
        probe = self.document(0, 500, note="")
        self._pad = "x" * max(0, RECORD_BYTES - len(json.dumps(probe, separators=(",", ":"))))

    def document(self, i: int, amount: int, *, note: str | None = None, **extra: Any) -> dict[str, Any]:
        return {
            "id": f"{self.prefix}-{i:08d}", "type": "order.created", "source": "bench-upstream",
            "specversion": "1.0", "time": self.now, "subject": f"customer-{i % self.subjects:05d}",
            "tenantid": TENANT, "dataschemaversion": 1, "datacontenttype": "application/json",
            "data": {"amount": amount, "currency": "EUR", "seq": i, **extra,
                     "note": self._pad if note is None else note},
        }

    def record(self, i: int, **extra: Any) -> tuple[bytes, bytes, int]:
        amount = self.rng.randrange(1000)
        doc = self.document(i, amount, **extra)
        return f"{TENANT}:{doc['subject']}".encode(), json.dumps(doc, separators=(",", ":")).encode(), amount


def golden(name: str) -> dict[str, Any]:
    path = Path(automation_shared.__file__).parent / "contracts" / "golden" / f"{name}.v1.json"
    return dict(json.loads(path.read_text()))


class ProjectionRecords:
    """Per-topic records for the projector, built from the golden fixtures with unique ids."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.now = iso(time.time())
        self.t = {name: golden(name) for name in ("trigger.detected", "trigger.skipped", "run.started",
                                                   "action.completed", "run.finished")}
        self.automation_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench:{prefix}:automation"))
        step2 = copy.deepcopy(self.t["trigger.detected"]["data"]["actions"][0]) | {"id": "step-2"}
        self.t["trigger.detected"]["data"]["actions"].append(step2)

    def _envelope(self, kind: str, event_id: str, root: str, data: dict[str, Any]) -> bytes:
        doc = copy.deepcopy(self.t[kind])
        doc.update(id=event_id, source="bench-projection", time=self.now, tenantid=TENANT,
                   subject=f"customer-{root[-4:]}", correlationid=root)
        doc["data"].update(data)
        return json.dumps(doc, separators=(",", ":")).encode()

    def _trigger_event(self, root: str) -> dict[str, Any]:
        return {"id": root, "type": "order.created", "source": "bench-upstream",
                "subject": f"customer-{root[-4:]}", "time": self.now}

    def runs(self, count: int) -> dict[str, list[tuple[bytes, bytes]]]:
        out: dict[str, list[tuple[bytes, bytes]]] = {k: [] for k in self.t if k != "trigger.skipped"}
        base = {"automation_id": self.automation_id, "automation_version": 1}
        for i in range(count):
            root = f"{self.prefix}-evt-{i:08d}"
            run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench:{root}"))
            key = run_id.encode()
            out["trigger.detected"].append((key, self._envelope(
                "trigger.detected", f"{run_id}:detected", root,
                base | {"run_id": run_id, "sequence": 0, "trigger_event": self._trigger_event(root)})))
            out["run.started"].append((key, self._envelope(
                "run.started", f"{run_id}:started", root,
                base | {"run_id": run_id, "sequence": 1, "steps_total": 2})))
            for seq, step in ((2, "step-1"), (3, "step-2")):
                out["action.completed"].append((key, self._envelope(
                    "action.completed", f"{run_id}:{step}:1", root,
                    base | {"run_id": run_id, "sequence": seq, "step_id": step,
                            "idempotency_key": f"{run_id}:{step}:1"})))
            out["run.finished"].append((key, self._envelope(
                "run.finished", f"{run_id}:finished", root,
                base | {"run_id": run_id, "sequence": 4, "steps_completed": 2,
                        "message": "2 of 2 steps completed"})))
        return out

    def skips(self, count: int) -> list[tuple[bytes, bytes]]:
        out = []
        for i in range(count):
            root = f"{self.prefix}-skip-{i:08d}"
            skip_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench:{root}"))
            out.append((self.automation_id.encode(), self._envelope(
                "trigger.skipped", f"{skip_id}:skipped", root,
                {"skip_id": skip_id, "automation_id": self.automation_id, "automation_version": 1,
                 "trigger_event": self._trigger_event(root)})))
        return out


def rule(name: str, conditions: list[dict[str, Any]], actions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "category": "bench", "status": "deployed",
            "triggers": [{"kind": "event", "event_type": "order.created"}],
            "conditions": conditions, "actions": actions}


def webhook_chain(receiver: str) -> list[dict[str, Any]]:
    return [{"type": "webhook", "id": f"step-{n}", "url": f"{receiver}/step-{n}",
             "body": {"amount": "{{amount}}", "customer": "{{subject.id}}"}} for n in (1, 2)]


# ----------------------------------------------------------------------------------- harness


class Bench:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.base = Settings(service_name="bench")
        self.kafka = Kafka(self.base)
        self.procs = Processes(Path(config.logs))
        self.run_id = uuid.uuid4().hex[:6]
        self.started = time.monotonic()
        self.results: dict[str, Any] = {}
        self.report: dict[str, Any] = {}
        self.rss: dict[str, list[dict[str, Any]]] = {}
        self.receiver: subprocess.Popen[bytes] | None = None
        self.receiver_url = ""
        self.kafka_pid = self._pidfile("kafka")
        self.postmaster = self._pidfile("postgres")

    def _pidfile(self, name: str) -> int | None:
        try:
            return int((Path(self.config.stack_dir) / "pids" / f"{name}.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def settings(self, phase: str, service: str = "bench") -> Settings:
        return Settings(namespace=f"bench{self.run_id}{phase}", service_name=service)

    def cpu_meter(self, *services: ServiceProcess) -> CpuMeter:
        pids = {s.name: s.pid for s in services} | {"harness": os.getpid()}
        if self.kafka_pid:
            pids["kafka"] = self.kafka_pid
        return CpuMeter(pids, self.postmaster).start()

    async def launch(self, settings: Settings, *names: str) -> list[ServiceProcess]:
        started = [self.procs.launch(settings, name) for name in names]
        await self.procs.wait_ready(*started)
        return started

    async def stop(self, phase: str, *services: ServiceProcess) -> None:
        """Record each process's peak RSS (VmHWM), then stop it."""
        for service in services:
            peak = service.peak_rss_mb()
            if peak is not None:
                self.rss.setdefault(service.name, []).append({"phase": phase, "peak_rss_mb": peak})
            await self.procs.stop(service)

    async def create_rule(self, service: ServiceProcess, settings: Settings, body: dict[str, Any]) -> str:
        async with httpx.AsyncClient(timeout=15) as client:
            response = await client.post(f"{service.url}/api/v1/automations", json=body,
                                         headers=bearer(settings, TENANT, "admin"))
        if response.status_code != 201:
            raise BenchError(f"creating the rule answered {response.status_code}: {response.text[:500]}")
        return str(response.json()["id"])

    async def start_receiver(self) -> None:
        port = free_port()
        self.receiver = self.procs.launch_helper(
            "webhook-receiver", [sys.executable, str(ROOT / "bench" / "webhook_server.py"), "--port", str(port)])
        self.receiver_url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(timeout=2) as client:
            for _ in range(100):
                try:
                    await client.get(f"{self.receiver_url}/_stats")
                    return
                except httpx.TransportError:
                    if self.receiver.poll() is not None:
                        break
                    await asyncio.sleep(0.1)
        raise BenchError("the webhook receiver did not start")

    async def receiver_stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=5) as client:
            return dict((await client.get(f"{self.receiver_url}/_stats")).json())

    def stop_receiver(self) -> None:
        if self.receiver is not None and self.receiver.poll() is None:
            self.receiver.terminate()
            try:
                self.receiver.wait(10)
            except subprocess.TimeoutExpired:
                self.receiver.kill()

    def time_left(self) -> float:
        return self.config.max_seconds - (time.monotonic() - self.started)

    def cap(self) -> float:
        """How long a measured backlog may run: BENCH_PHASE_SECONDS, less if the overall budget is short."""
        return max(10.0, min(self.config.phase_seconds, self.time_left() - 60))

    # ------------------------------------------------------------------------------- (a)

    async def baseline(self) -> dict[str, Any]:
        n = self.config.baseline_records
        ns = f"bench{self.run_id}base"
        source, target = f"{ns}.relay.in", f"{ns}.relay.out"
        await self.kafka.admin.create_topics([NewTopic(source, 6, 1), NewTopic(target, 6, 1)])
        events = DomainEvents(f"{ns}-e", self.config.subjects)
        t = time.monotonic()
        await self.kafka.publish_many(source, ((k, v) for k, v, _ in map(events.record, range(n))))
        publish_s = time.monotonic() - t

        consumer = AIOKafkaConsumer(source, **kafka_client_options(self.base), group_id=f"{ns}.relay",
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        producer = AIOKafkaProducer(**kafka_client_options(self.base), acks="all", enable_idempotence=True)
        meter = self.cpu_meter()
        await producer.start()
        await consumer.start()
        relayed, batches, first = 0, 0, None
        deadline = time.monotonic() + self.cap()
        max_records = self.config.baseline_max_records or None
        try:
            while relayed < n and time.monotonic() < deadline:
                before = time.monotonic()
                got = await consumer.getmany(timeout_ms=200, max_records=max_records)
                if not got:
                    continue
                if first is None:
                    first = before
                futures = [await producer.send(target, m.value, key=m.key)
                           for records in got.values() for m in records]
                await asyncio.gather(*futures)
                await consumer.commit()
                relayed += len(futures)
                batches += 1
            end = time.monotonic()
        finally:
            await consumer.stop()
            await producer.stop()
        cpu = meter.stop()
        seconds = end - first if first is not None else None
        return {"records": n, "relayed": relayed, "complete": relayed >= n, "seconds": _r(seconds),
                "records_per_s": _r(relayed / seconds if seconds else None), "batches": batches,
                "record_bytes": len(events.record(0)[1]), "prepublish_seconds": _r(publish_s), **cpu,
                "how": f"getmany(max_records={max_records}) -> send each (acks=all, idempotent) -> await the acks "
                       "-> commit the batch's offsets; from the first fetch to the last commit"}

    # ------------------------------------------------------------------------------- (b)

    async def detection(self) -> dict[str, Any]:
        n = self.config.detection_events
        settings = self.settings("det")
        await prepare_namespace(settings, ["trigger_detector"])
        [td] = await self.launch(settings, "trigger-detector")
        await self.create_rule(td, settings, rule(
            "bench detection 10 %", [{"field": "amount", "operator": ">=", "value": 900}],
            [{"type": "webhook", "url": f"{self.receiver_url}/never-called"}]))
        await self.stop("detection-setup", td)  # the detector is stopped while the backlog is published

        events = DomainEvents(f"{settings.namespace}-e", self.config.subjects)
        matches = 0

        def records() -> Iterator[tuple[bytes, bytes]]:
            nonlocal matches
            for i in range(n):
                key, value, amount = events.record(i)
                matches += amount >= 900
                yield key, value

        domain = settings.topic(topics.DOMAIN_EVENTS)
        t = time.monotonic()
        await self.kafka.publish_many(domain, records())
        publish_s = time.monotonic() - t
        ends = await self.kafka.end_offsets([domain])
        group = self.settings("det", "trigger-detector").group("event-detector")
        outputs = [settings.topic(topics.TRIGGER_DETECTED), settings.topic(topics.TRIGGER_SKIPPED)]

        async def done() -> int:
            committed = await self.kafka.committed(group, ends)
            return min(committed, await self.kafka.count(*outputs))

        launched = time.monotonic()
        td = self.procs.launch(settings, "trigger-detector")
        meter = self.cpu_meter(td)
        progress = await watch(done, total=n, timeout=self.cap(), alive=td.alive)
        cpu = meter.stop()
        committed = await self.kafka.committed(group, ends)
        detected = await self.kafka.count(outputs[0])
        skipped = await self.kafka.count(outputs[1])
        dlq = await self.kafka.count(settings.topic(topics.dlq(topics.DOMAIN_EVENTS)))
        await self.stop("detection", td)
        rate, seconds = progress.backlog_rate()
        start = progress.t_start()
        return {
            "events": n, "expected_detected": matches, "expected_skipped": n - matches,
            "committed": committed, "detected_records": detected, "skipped_records": skipped,
            "dead_lettered": dlq,
            "complete": progress.done, "processed": progress.last, "seconds": _r(seconds),
            "events_per_s": _r(rate), "steady_events_per_s": _r(progress.steady_rate()),
            "startup_seconds": _r(start - launched if start else None),
            "events_per_s_from_launch": _r(progress.last / (progress.samples[-1][0] - launched)),
            "prepublish_seconds": _r(publish_s), "consumer_group": group, **cpu,
            "curve": progress.series(),
        }

    # ------------------------------------------------------------------------------- (c)

    async def e2e(self) -> dict[str, Any]:
        n = self.config.e2e_events
        settings = self.settings("e2e")
        await prepare_namespace(settings, ["trigger_detector", "executor"])
        td, ex = await self.launch(settings, "trigger-detector", "executor")
        await self.create_rule(td, settings, rule(
            "bench e2e 2-step chain", [{"field": "amount", "operator": ">=", "value": 0}],
            webhook_chain(self.receiver_url)))
        await self.stop("e2e-setup", td)
        before = await self.receiver_stats()

        events = DomainEvents(f"{settings.namespace}-e", self.config.subjects)
        t = time.monotonic()
        await self.kafka.publish_many(settings.topic(topics.DOMAIN_EVENTS),
                                      ((k, v) for k, v, _ in map(events.record, range(n))))
        publish_s = time.monotonic() - t
        finished_topic = settings.topic(topics.RUN_FINISHED)

        async def finished() -> int:
            return await self.kafka.count(finished_topic)

        td = self.procs.launch(settings, "trigger-detector")
        meter = self.cpu_meter(td, ex)
        progress = await watch(finished, total=n, timeout=self.cap(),
                               alive=lambda: td.alive() and ex.alive())
        cpu = meter.stop()
        await self.stop("e2e", td, ex)
        after = await self.receiver_stats()
        statuses: dict[str, int] = {}
        for record in await self.kafka.read_all(finished_topic):
            status = json.loads(record.value)["data"].get("status", "?")
            statuses[status] = statuses.get(status, 0) + 1
        rate, seconds = progress.backlog_rate()
        return {
            "events": n, "complete": progress.done, "runs_finished": progress.last, "statuses": statuses,
            "webhook_requests": after["total"] - before["total"],
            "runs_per_s": _r(progress.steady_rate() or rate), "runs_per_s_whole_backlog": _r(rate),
            "seconds": _r(seconds), "prepublish_seconds": _r(publish_s), **cpu, "curve": progress.series(),
            "how": "run.finished records/s between 10 % and 90 % of the runs finished in the measured period",
        }

    # ------------------------------------------------------------------------------- (d)

    async def latency(self, e2e_rate: float | None) -> dict[str, Any]:
        settings = self.settings("lat")
        await prepare_namespace(settings, ["trigger_detector", "executor"])
        td, ex = await self.launch(settings, "trigger-detector", "executor")
        await self.create_rule(td, settings, rule(
            "bench latency 2-step chain", [{"field": "amount", "operator": ">=", "value": 0}],
            webhook_chain(self.receiver_url)))
        domain = settings.topic(topics.DOMAIN_EVENTS)
        finished_topic = settings.topic(topics.RUN_FINISHED)

        async def finished() -> int:
            return await self.kafka.count(finished_topic)

        warm = DomainEvents(f"{settings.namespace}-warm", self.config.subjects)
        warmup = 20
        await self.kafka.publish_many(domain, ((k, v) for k, v, _ in map(warm.record, range(warmup))))
        warmed = await watch(finished, total=warmup, timeout=45, interval=0.3)

        rate = self.config.latency_rate or (e2e_rate / 2 if e2e_rate else 10.0)
        rate = max(1.0, rate)
        count = max(1, min(int(rate * self.config.latency_seconds), 100_000))
        events = DomainEvents(f"{settings.namespace}-e", self.config.subjects, seed=11)
        sent: dict[str, float] = {}
        meter = self.cpu_meter(td, ex)
        t0 = time.monotonic()
        late = 0
        pending = []
        for i in range(count):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.005:
                late += 1
            stamp = time.time()
            key, value, _ = events.record(i, sent_at_ms=round(stamp * 1000, 3))
            pending.append(await self.kafka.producer.send(domain, value, key=key))
            sent[f"{events.prefix}-{i:08d}"] = stamp * 1000
        await asyncio.gather(*pending)
        publish_s = time.monotonic() - t0
        drain = await watch(finished, total=warmup + count, timeout=max(30.0, self.config.latency_seconds),
                            interval=0.3)
        cpu = meter.stop()
        await self.stop("latency", td, ex)

        run_to_event: dict[str, str] = {}
        for record in await self.kafka.read_all(settings.topic(topics.TRIGGER_DETECTED)):
            data = json.loads(record.value)["data"]
            run_to_event[data["run_id"]] = data["trigger_event"]["id"]

        async def measure(topic: str, accept: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
            kafka_ts: dict[str, float] = {}
            env_time: dict[str, float] = {}
            for record in await self.kafka.read_all(settings.topic(topic)):
                doc = json.loads(record.value)
                if not accept(doc["data"]):
                    continue
                event_id = run_to_event.get(doc["data"].get("run_id", ""))
                if event_id not in sent:
                    continue
                kafka_ts.setdefault(event_id, record.timestamp - sent[event_id])
                if doc.get("time"):
                    stamp = datetime.fromisoformat(doc["time"].replace("Z", "+00:00")).timestamp() * 1000
                    env_time.setdefault(event_id, stamp - sent[event_id])
            values = [kafka_ts.get(event_id, math.inf) for event_id in sent]
            by_env = [env_time.get(event_id, math.inf) for event_id in sent]
            quarter = max(1, len(values) // 4)
            return {"samples": len(sent), "missing": sum(v == math.inf for v in values),
                    # growing from the first to the last quarter of the sends: the pace is above capacity
                    "p50_first_quarter_ms": _ms(percentile(values[:quarter], 0.50)),
                    "p50_last_quarter_ms": _ms(percentile(values[-quarter:], 0.50)),
                    "p50_ms": _ms(percentile(values, 0.50)), "p99_ms": _ms(percentile(values, 0.99)),
                    "max_ms": _ms(max(values) if values else None),
                    "envelope_time_p50_ms": _ms(percentile(by_env, 0.50)),
                    "envelope_time_p99_ms": _ms(percentile(by_env, 0.99))}

        first_step = await measure(topics.ACTION_COMPLETED,
                                   lambda d: d.get("step_id") == "step-1" and d.get("status") == "completed")
        whole_run = await measure(topics.RUN_FINISHED, lambda d: True)
        # where the time goes: publish -> each stage's record on Kafka (p50/p99 only)
        stages = {}
        for stage in (topics.TRIGGER_DETECTED, topics.RUN_STARTED):
            measured = await measure(stage, lambda d: True)
            stages[stage] = {k: measured[k] for k in ("p50_ms", "p99_ms", "missing")}
        stages["action.completed step-1"] = {k: first_step[k] for k in ("p50_ms", "p99_ms", "missing")}
        stages["run.finished"] = {k: whole_run[k] for k in ("p50_ms", "p99_ms", "missing")}
        return {
            "rate_per_s": _r(rate), "seconds": self.config.latency_seconds, "events": count,
            "publish_seconds": _r(publish_s), "late_sends": late, "warmup_complete": warmed.done,
            "drained": drain.done, "first_step": first_step, "whole_run": whole_run, "stages": stages, **cpu,
            "how": "event published (wall clock just before send) -> Kafka CreateTime of the first step's "
                   "action.completed; events never completed count as infinitely late",
        }

    # ------------------------------------------------------------------------------- (e)

    async def projection(self) -> dict[str, Any]:
        settings = self.settings("proj")
        await prepare_namespace(settings, ["timeline_projector", "approvals"])
        from timeline_projector.handlers import SUBSCRIPTIONS  # the projector's own topic -> consumer map

        build = ProjectionRecords(settings.namespace)
        per_topic = build.runs(self.config.projection_runs)
        per_topic["trigger.skipped"] = build.skips(self.config.projection_skips)
        t = time.monotonic()
        for topic, records in per_topic.items():
            await self.kafka.publish_many(settings.topic(topic), records)
        publish_s = time.monotonic() - t
        record_count = {topic: len(records) for topic, records in per_topic.items()}
        del per_topic

        projector = self.settings("proj", "timeline-projector")
        groups = []
        for topic, consumer in SUBSCRIPTIONS.items():
            groups.append((projector.group(consumer), await self.kafka.end_offsets([settings.topic(topic)])))
        total = sum(sum(ends.values()) for _, ends in groups)

        async def committed() -> int:
            return sum([await self.kafka.committed(group, ends) for group, ends in groups])

        launched = time.monotonic()
        tp = self.procs.launch(settings, "timeline-projector")
        meter = self.cpu_meter(tp)
        progress = await watch(committed, total=total, timeout=self.cap(), interval=0.25,
                               alive=tp.alive)
        cpu = meter.stop()
        timeline: dict[str, Any] = {}
        try:
            await self.procs.wait_ready(tp, timeout=30)
            async with httpx.AsyncClient(timeout=30) as client:
                page = (await client.get(f"{tp.url}/api/v1/timeline", params={"limit": 1},
                                         headers=bearer(settings, TENANT, "viewer"))).json()
            timeline = {"total_count": page.get("total_count"), "stats": page.get("stats")}
        except (BenchError, httpx.HTTPError, ValueError) as exc:
            timeline = {"error": repr(exc)}
        await self.stop("projection", tp)

        # the approvals service has no traffic in this benchmark: its idle footprint, for (f)
        [approvals] = await self.launch(settings, "approvals")
        await asyncio.sleep(2)
        await self.stop("idle", approvals)

        rate, seconds = progress.backlog_rate()
        start = progress.t_start()
        return {
            "records": total, "by_topic": record_count, "runs": self.config.projection_runs,
            "skips": self.config.projection_skips, "complete": progress.done, "committed": progress.last,
            "seconds": _r(seconds), "events_per_s": _r(rate), "steady_events_per_s": _r(progress.steady_rate()),
            "startup_seconds": _r(start - launched if start else None), "prepublish_seconds": _r(publish_s),
            "consumer_groups": [g for g, _ in groups], "timeline_check": timeline,
            "expected_timeline_entries": self.config.projection_runs + self.config.projection_skips,
            **cpu, "curve": progress.series(),
        }

    # ------------------------------------------------------------------------------- (g)

    async def schedules(self) -> dict[str, Any]:
        """Many deployed every-minute schedules on several detector replicas: each slot once, how late."""
        from automation_shared.contracts.rules import RuleStatus as Status
        from automation_shared.contracts.rules import validate_rule
        from automation_shared.db import create_engine
        from trigger_detector import SCHEMA
        from trigger_detector.adapters import repository
        from trigger_detector.domain import rules as rules_domain

        n, minutes = self.config.schedule_rules, self.config.schedule_minutes
        settings = self.settings("sch", "trigger-detector")
        await prepare_namespace(settings, ["trigger_detector"])
        definition = validate_rule({"name": "bench every minute", "triggers": [{"kind": "schedule",
                                                                                "cron": "* * * * *"}],
                                    "actions": [{"type": "add_alert", "title": "tick"}]})
        # created through the domain and the repository, as the API does, without n HTTP round trips
        engine = create_engine(settings, settings.db_schema(SCHEMA))
        t = time.monotonic()
        try:
            for start in range(0, n, 500):
                now = datetime.now(UTC)
                async with engine.begin() as conn:
                    for i in range(start, min(start + 500, n)):
                        change = rules_domain.create(definition, Status.DEPLOYED, automation_id=f"sch-{i}",
                                                     tenant_id=TENANT, user_id="bench", now=now,
                                                     new_id=lambda: str(uuid.uuid4()))
                        await repository.save(conn, change, now=now)
        finally:
            await engine.dispose()
        create_s = time.monotonic() - t
        replicas = await self.launch(settings, *["trigger-detector"] * self.config.schedule_replicas)
        meter = self.cpu_meter(*replicas)
        # steady state: the first slot whose whole lead window (decided up to schedule_lead_seconds
        # early) lies after the replicas came up; earlier slots are decided in the start-up catch-up
        settled = datetime.now(UTC) + timedelta(seconds=settings.schedule_lead_seconds + 5)
        first = settled.replace(second=0, microsecond=0) + timedelta(minutes=1)
        measured = [first + timedelta(minutes=k) for k in range(minutes)]
        until = measured[-1] + timedelta(seconds=30)
        await asyncio.sleep(max(0.0, min((until - datetime.now(UTC)).total_seconds(), self.time_left() - 30)))
        cpu = meter.stop()
        records = await self.kafka.read_all(settings.topic(topics.TRIGGER_DETECTED))
        await self.stop("schedule", *replicas)
        fires: dict[tuple[str, str], int] = {}
        late: list[float] = []
        wanted = {slot.isoformat() for slot in measured}
        # how late each slot reached Kafka (the record's create time, stamped by the relay's producer
        # when it sends): decisions are made ahead, so the decision time says nothing about lateness
        published = {json.loads(r.value)["id"]: (json.loads(r.value), r.timestamp) for r in records}
        for record, sent_ms in published.values():  # re-sent records carry the same id: one decision
            slot = record["data"]["context"]["schedule"]["slot"]
            key = (record["data"]["automation_id"], slot)
            fires[key] = fires.get(key, 0) + 1
            if slot in wanted:
                late.append(sent_ms - datetime.fromisoformat(slot).timestamp() * 1000)
        expected = n * len(measured)
        seen = sum(1 for (_, slot) in fires if slot in wanted)
        late.sort()
        return {
            "rules": n, "minutes": minutes, "replicas": self.config.schedule_replicas,
            "first_measured_slot": first.isoformat(),
            "create_seconds": _r(create_s), "expected": expected, "fired": seen,
            "missing": expected - seen, "doubled": sum(count - 1 for count in fires.values() if count > 1),
            "p50_ms": _r(late[len(late) // 2]) if late else None,
            "p99_ms": _r(late[min(len(late) - 1, int(len(late) * 0.99))]) if late else None,
            "max_ms": _r(late[-1]) if late else None, **cpu,
        }

    # ------------------------------------------------------------------------------- (h)

    async def timers(self) -> dict[str, Any]:
        """Many open behaviour timers, due over one minute, with the detector restarted in the middle:
        each fires once, and how late."""
        from automation_shared.contracts.rules import RuleStatus as Status
        from automation_shared.contracts.rules import validate_rule
        from automation_shared.db import create_engine
        from trigger_detector import SCHEMA
        from trigger_detector.adapters import repository
        from trigger_detector.adapters.tables import behavior_states
        from trigger_detector.domain import rules as rules_domain

        n = self.config.timers
        settings = self.settings("tim", "trigger-detector")
        await prepare_namespace(settings, ["trigger_detector"])
        definition = validate_rule({"name": "bench abandoned carts", "triggers": [
            {"kind": "behavior", "behavior": "abandoned_cart", "within_hours": 1}],
            "actions": [{"type": "add_alert", "title": "come back"}]})
        engine = create_engine(settings, settings.db_schema(SCHEMA))
        start = datetime.now(UTC) + timedelta(seconds=45)  # armed timers come due over the minute after
        t = time.monotonic()
        try:
            async with engine.begin() as conn:
                now = datetime.now(UTC)
                change = rules_domain.create(definition, Status.DEPLOYED, automation_id="tim-rule", tenant_id=TENANT,
                                             user_id="bench", now=now, new_id=lambda: str(uuid.uuid4()))
                await repository.save(conn, change, now=now)
            for first in range(0, n, 10_000):  # as the detection handler leaves them: armed by a cart event
                rows = [{"automation_id": "tim-rule", "subject": f"c-{i}", "tenant_id": TENANT, "version": 1,
                         "due_at": start + timedelta(seconds=60 * i / n), "updated_at": now,
                         "state": {"last_event": {"id": f"cart-{i}", "type": "cart.updated", "source": "bench",
                                                  "time": now.isoformat(), "data": {"cart_total": i % 100}},
                                   "orders": [], "fired": False}}
                        for i in range(first, min(first + 10_000, n))]
                async with engine.begin() as conn:
                    await conn.execute(behavior_states.insert(), rows)
        finally:
            await engine.dispose()
        arm_s = time.monotonic() - t
        [td] = await self.launch(settings, "trigger-detector")
        meter = self.cpu_meter(td)
        await asyncio.sleep(max(0.0, (start - datetime.now(UTC)).total_seconds() + 30))
        td.process.send_signal(signal.SIGKILL)  # mid-way through the minute the timers come due
        killed_at = datetime.now(UTC)
        await asyncio.sleep(3)
        [td] = await self.launch(settings, "trigger-detector")
        back_at = datetime.now(UTC)  # ready again: timers due in between could not fire on time
        detected_topic = settings.topic(topics.TRIGGER_DETECTED)
        await watch(lambda: self.kafka.count(detected_topic), total=n,
                    timeout=max(30.0, min(300.0, self.time_left() - 60)), interval=2, alive=td.alive)
        cpu = meter.stop()
        records = await self.kafka.read_all(detected_topic)
        await self.stop("timers", td)
        # a record re-sent by the outbox relay after the kill carries the same event id: one decision;
        # lateness is to the record's create time (stamped when the relay sends it to Kafka)
        unique = {json.loads(r.value)["id"]: (json.loads(r.value), r.timestamp) for r in records}
        fires: dict[str, int] = {}
        late: list[float] = []  # timers due while a detector ran
        after_outage: list[float] = []  # timers due while none did: how long after the restart
        for record, sent_ms in unique.values():
            subject = record["subject"]
            fires[subject] = fires.get(subject, 0) + 1
            index = int(subject.split("-", 1)[1])
            due = start + timedelta(seconds=60 * index / n)
            if killed_at <= due <= back_at:
                after_outage.append(sent_ms - back_at.timestamp() * 1000)
            else:
                late.append(sent_ms - due.timestamp() * 1000)
        late.sort()
        return {
            "timers": n, "arm_seconds": _r(arm_s), "fired": len(fires), "missing": n - len(fires),
            "doubled": sum(count - 1 for count in fires.values() if count > 1),
            "records_resent": len(records) - len(unique),
            "outage_seconds": _r((back_at - killed_at).total_seconds()), "due_in_outage": len(after_outage),
            "outage_caught_up_ms": _r(max(after_outage)) if after_outage else None,
            "p50_ms": _r(late[len(late) // 2]) if late else None,
            "p99_ms": _r(late[min(len(late) - 1, int(len(late) * 0.99))]) if late else None,
            "max_ms": _r(late[-1]) if late else None, **cpu,
        }

    # ------------------------------------------------------------------------------- driver

    async def run(self) -> int:
        wanted = [p.strip() for p in self.config.phases.split(",") if p.strip()]
        failed = False
        try:
            await self.kafka.start()
            await self.start_receiver()
            plan: list[tuple[str, Callable[[], Coroutine[Any, Any, dict[str, Any]]]]] = [
                ("baseline", self.baseline), ("detection", self.detection), ("e2e", self.e2e),
                ("latency", lambda: self.latency(self.results.get("e2e", {}).get("runs_per_s"))),
                ("projection", self.projection), ("schedule", self.schedules), ("timers", self.timers),
            ]
            for name, phase in plan:
                if name not in wanted:
                    continue
                if self.time_left() < 30:
                    self.results[name] = {"skipped": f"time budget BENCH_MAX_SECONDS={self.config.max_seconds} spent"}
                    print(f"[bench] {name}: skipped (time budget)", file=sys.stderr)
                    continue
                print(f"[bench] {name} ...", file=sys.stderr)
                t = time.monotonic()
                try:
                    self.results[name] = await phase()
                except Exception as exc:  # noqa: BLE001 - recorded, the other phases still run
                    failed = True
                    self.results[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
                    print(f"[bench] {name} FAILED: {exc}\n{traceback.format_exc()}", file=sys.stderr)
                    self.procs.kill_all()
                self.results.setdefault(name, {})["phase_wall_seconds"] = _r(time.monotonic() - t)
                print(f"[bench] {name} done in {time.monotonic() - t:.0f}s", file=sys.stderr)
        finally:
            self.procs.kill_all()
            self.stop_receiver()
            await self.kafka.close()
        self.report = await self.build_report()
        return 1 if failed else 0

    async def build_report(self) -> dict[str, Any]:
        r = self.results
        base = r.get("baseline", {}).get("records_per_s")
        rss = {name: max(entry["peak_rss_mb"] for entry in entries) for name, entries in self.rss.items()}
        det = r.get("detection", {})
        e2e = r.get("e2e", {})
        lat = r.get("latency", {}).get("first_step", {})
        proj = r.get("projection", {})
        figures = {
            "baseline_records_per_s": base,
            "detection_events_per_s": det.get("events_per_s"),
            "e2e_runs_per_s": e2e.get("runs_per_s"),
            "latency_p50_ms": lat.get("p50_ms"),
            "latency_p99_ms": lat.get("p99_ms"),
            "projection_events_per_s": proj.get("events_per_s"),
            "schedule_p99_ms": r.get("schedule", {}).get("p99_ms"),
            "timer_p99_ms": r.get("timers", {}).get("p99_ms"),
            "peak_rss_mb": rss,
        }
        return {
            "schema": 1,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine() | await postgres_info(self.base),
            "git": git_info(),
            "config": asdict(self.config),
            "targets": TARGETS,
            "figures": figures,
            "table": table(figures, r),
            "phases": r,
            "rss_by_phase": self.rss,
            "total_seconds": _r(time.monotonic() - self.started),
        }


# ----------------------------------------------------------------------------------- report


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _ms(value: float | None) -> float | str | None:
    if value is None:
        return None
    return "inf" if value == math.inf else round(value, 1)


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.3f}" if value and base else "-"


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("pass" if ok else "MISS")


def _note(phase: dict[str, Any], done_key: str = "complete") -> str:
    if "error" in phase:
        return "error: " + " ".join(str(phase["error"]).split())[:70]
    if "skipped" in phase:
        return "skipped"
    notes = []
    if phase and not phase.get(done_key, True):
        notes.append("time cap: partial backlog")
    notes += _wrong_outputs(phase)
    return "; ".join(notes)


def _wrong_outputs(phase: dict[str, Any]) -> list[str]:
    """Correctness cross-checks: a fast service that drops or duplicates work must not look good."""
    wrong = []
    if phase.get("dead_lettered"):
        wrong.append(f"{phase['dead_lettered']} dead-lettered")
    if phase.get("complete") and "expected_detected" in phase and (
            phase["detected_records"] != phase["expected_detected"]
            or phase["skipped_records"] != phase["expected_skipped"]):
        wrong.append(f"outputs {phase['detected_records']}+{phase['skipped_records']} != expected "
                     f"{phase['expected_detected']}+{phase['expected_skipped']}")
    statuses = phase.get("statuses") or {}
    if any(status != "succeeded" for status in statuses):
        wrong.append(f"run statuses {statuses}")
    if phase.get("complete") and "webhook_requests" in phase and phase["webhook_requests"] != 2 * phase["events"]:
        wrong.append(f"{phase['webhook_requests']} webhooks for {phase['events']} 2-step runs")
    timeline = phase.get("timeline_check")
    if phase.get("complete") and timeline and timeline.get("total_count") != phase.get("expected_timeline_entries"):
        wrong.append(f"timeline has {timeline.get('total_count')} of {phase.get('expected_timeline_entries')} entries")
    return wrong


def table(f: dict[str, Any], r: dict[str, Any]) -> list[dict[str, str]]:
    base = f["baseline_records_per_s"]
    rows = []

    def row(label: str, value: Any, unit: str, ratio: str, target: str, ok: bool | None, note: str = "") -> None:
        shown = "-" if value is None else (f"{value:,.0f}" if isinstance(value, float | int) else str(value))
        rows.append({"figure": label, "value": f"{shown} {unit}".strip(), "x_baseline": ratio, "target": target,
                     "verdict": _verdict(ok) if value is not None else "-", "note": note})

    row("(a) baseline aiokafka relay", base, "rec/s", "1.000" if base else "-", "", None, _note(r.get("baseline", {})))
    det = f["detection_events_per_s"]
    row("(b) detection", det, "ev/s", _ratio(det, base), "≥ 3000 ev/s and ≥ 0.3×(a)",
        None if det is None else det >= TARGETS["detection_events_per_s"]
        and (base is None or det >= TARGETS["detection_ratio_to_baseline"] * base), _note(r.get("detection", {})))
    runs = f["e2e_runs_per_s"]
    row("(c) end-to-end 2-step runs", runs, "runs/s", _ratio(runs, base), "≥ 500 runs/s",
        None if runs is None else runs >= TARGETS["e2e_runs_per_s"], _note(r.get("e2e", {})))
    lat = r.get("latency", {})
    rate = lat.get("rate_per_s")
    p50, p99 = f["latency_p50_ms"], f["latency_p99_ms"]
    lat_note = _note(lat) or (f"at {rate:g} ev/s" if rate else "")
    first = lat.get("first_step", {})
    if first.get("missing"):
        lat_note += f", {first['missing']} never completed"
    early, late = first.get("p50_first_quarter_ms"), first.get("p50_last_quarter_ms")
    if isinstance(early, float | int) and (late == "inf" or isinstance(late, float | int) and late > 2 * early + 50):
        lat_note += f", queueing: p50 {early:,.0f} → {late if late == 'inf' else f'{late:,.0f}'} ms"
    row("(d) latency p50 event→step 1", p50, "ms", "", "", None, lat_note)
    row("(d) latency p99 event→step 1", p99, "ms", "", "≤ 50 ms",
        None if p99 is None else (p99 != "inf" and p99 <= TARGETS["latency_p99_ms"]), lat_note)
    proj = f["projection_events_per_s"]
    row("(e) projection catch-up", proj, "ev/s", _ratio(proj, base), "≥ 5000 ev/s",
        None if proj is None else proj >= TARGETS["projection_events_per_s"], _note(r.get("projection", {})))
    sch = r.get("schedule", {})
    sch_note = _note(sch) or (f"{sch.get('rules', 0):,} rules × {sch.get('minutes')} min on "
                              f"{sch.get('replicas')} replicas: {sch.get('doubled')} doubled, "
                              f"{sch.get('missing')} missing" if sch.get("rules") else "")
    p99_s = f.get("schedule_p99_ms")
    row("(g) schedule slot → published p99", p99_s, "ms", "", "≤ 1000 ms, each slot once",
        None if p99_s is None else p99_s <= TARGETS["schedule_p99_ms"] and not sch.get("doubled")
        and not sch.get("missing"), sch_note)
    tim = r.get("timers", {})
    tim_note = _note(tim) or (f"{tim.get('timers', 0):,} timers, detector killed mid-way: {tim.get('doubled')} "
                              f"doubled, {tim.get('missing')} missing; the {tim.get('due_in_outage', 0):,} due in "
                              f"the {tim.get('outage_seconds')} s outage fired within "
                              f"{tim.get('outage_caught_up_ms')} ms of the restart" if tim.get("timers") else "")
    p99_t = f.get("timer_p99_ms")
    row("(h) behaviour timer due → published p99", p99_t, "ms", "", "≤ 1000 ms, each timer once",
        None if p99_t is None else p99_t <= TARGETS["timer_p99_ms"] and not tim.get("doubled")
        and not tim.get("missing"), tim_note)
    for name in ("trigger-detector", "executor", "approvals", "timeline-projector"):
        mb = f["peak_rss_mb"].get(name)
        row(f"(f) peak RSS {name}", mb, "MB", "", "≤ 150 MB", None if mb is None else mb <= TARGETS["rss_mb"],
            "idle (no traffic in this bench)" if name == "approvals" and mb is not None else "")
    return rows


def render_table(rows: list[dict[str, str]]) -> str:
    headers = {"figure": "figure", "value": "value", "x_baseline": "×(a)", "target": "target",
               "verdict": "", "note": "note"}
    widths = {k: max(len(headers[k]), *(len(row[k]) for row in rows)) for k in headers}
    lines = ["  ".join(headers[k].ljust(widths[k]) for k in headers).rstrip()]
    lines.append("  ".join("-" * widths[k] for k in headers))
    for row in rows:
        lines.append("  ".join((row[k].rjust(widths[k]) if k == "value" else row[k].ljust(widths[k]))
                               for k in headers).rstrip())
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    pom = (ROOT / "deploy" / "local" / "kafka" / "pom.xml").read_text()
    kafka = re.search(r"<kafka.version>(.+?)</kafka.version>", pom)
    info: dict[str, Any] = {
        "cores": os.cpu_count(), "cpu_model": model.group(1).strip() if model else None,
        "memory_mb": int(mem.group(1)) // 1024 if mem else None, "kernel": platform.release(),
        "loadavg_at_end": os.getloadavg(), "python": platform.python_version(),
        "kafka_broker": kafka.group(1) if kafka else None,
        "packages": {p: _version(p) for p in ("aiokafka", "faststream", "fastapi", "uvicorn", "sqlalchemy",
                                              "asyncpg", "httpx", "pydantic")},
    }
    return info


async def postgres_info(settings: Settings) -> dict[str, Any]:
    info: dict[str, Any] = {}
    try:
        conn = await asyncpg.connect(settings.database_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            info["postgres"] = await conn.fetchval("SHOW server_version")
            info["postgres_fsync"] = await conn.fetchval("SHOW fsync")
            info["postgres_synchronous_commit"] = await conn.fetchval("SHOW synchronous_commit")
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError) as exc:
        info["postgres"] = f"unknown: {exc!r}"
    return info


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_info() -> dict[str, Any]:
    """The checkout whose code was measured (where automation_shared is imported from: PYTHONPATH may
    point at a `git worktree` of another commit) and whether it had uncommitted changes."""
    code = Path(automation_shared.__file__).resolve().parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(code), *args], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    top = git("rev-parse", "--show-toplevel")
    dirty = git("status", "--porcelain", "--", f"{top}/shared", f"{top}/services") if top else ""
    return {"checkout": top or str(code), "commit": git("rev-parse", "HEAD"),
            "subject": git("log", "-1", "--format=%s"),
            "uncommitted_changes_in_shared_or_services": len(dirty.splitlines()) if dirty else 0}


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="[%(name)s] %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # retried metadata/leader hiccups of new topics
    bench = Bench(Config())

    async def guarded() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, lambda: task.cancel() if task else None)
        return await bench.run()

    try:
        code = asyncio.run(guarded())
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("[bench] interrupted", file=sys.stderr)
        return 130
    finally:
        bench.procs.kill_all()
        bench.stop_receiver()
    output = Path(bench.config.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(bench.report, indent=2, default=str) + "\n")
    print(summary(bench.report) + "\n")
    print(render_table(bench.report["table"]))
    stages = bench.report["phases"].get("latency", {}).get("stages")
    if stages:
        print("\n(d) publish → record on Kafka, p50 / p99 ms: " + ", ".join(
            f"{name} {v['p50_ms']} / {v['p99_ms']}" for name, v in stages.items()))
    print(f"\n[bench] wrote {os.path.relpath(output, ROOT)} ({bench.report['total_seconds']:.0f}s in all)")
    return code


def summary(report: dict[str, Any]) -> str:
    m, g = report["machine"], report["git"]
    lines = [
        f"{m['cores']} cores {m['cpu_model']}, {m['memory_mb']} MB; Python {m['python']}, "
        f"aiokafka {m['packages'].get('aiokafka')}, Kafka {m['kafka_broker']}, "
        f"Postgres {str(m.get('postgres', '?')).split()[0]} fsync={m.get('postgres_fsync')}",
        f"code: {g['checkout']} @ {g['commit'][:10]}"
        + (f" + {g['uncommitted_changes_in_shared_or_services']} uncommitted file(s) in shared/services"
           if g["uncommitted_changes_in_shared_or_services"] else ""),
    ]
    noisy = {name: phase["other_processes_cores"] for name, phase in report["phases"].items()
             if isinstance(phase, dict) and (phase.get("other_processes_cores") or 0) > 0.2}
    if noisy:
        lines.append("WARNING: other processes used CPU during " + ", ".join(
            f"{name} ({cores} cores)" for name, cores in noisy.items()) + ": figures are low")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
