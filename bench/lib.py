"""Benchmark plumbing: Kafka probes, service processes, /proc accounting, rate and percentile maths.

Everything talks to 127.0.0.1 only, and every wait is bounded in time.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    CoordinatorLoadInProgressError,
    GroupCoordinatorNotAvailableError,
    NotCoordinatorForGroupError,
)
from aiokafka.structs import ConsumerRecord
from automation_shared.cli import admin_client
from automation_shared.kafka_security import kafka_client_options
from automation_shared.settings import Settings

CLK_TCK = os.sysconf("SC_CLK_TCK")

PACKAGES = {
    "trigger-detector": "trigger_detector",
    "executor": "executor",
    "approvals": "approvals",
    "timeline-projector": "timeline_projector",
}


class BenchError(Exception):
    """A phase could not be measured (a service did not start, a topic is missing...)."""


# ----------------------------------------------------------------------------------- kafka


class Kafka:
    """One admin client, one group-less consumer (metadata, end offsets) and one producer."""

    admin: AIOKafkaAdminClient
    meta: AIOKafkaConsumer
    producer: AIOKafkaProducer

    def __init__(self, settings: Settings) -> None:
        self.settings = settings  # how every client connects (servers, TLS, SASL)
        self._partitions: dict[str, list[TopicPartition]] = {}
        self._started: list[Callable[[], Awaitable[None]]] = []

    async def start(self) -> None:
        """Create (aiokafka wants a running loop) and start the clients."""
        self.admin = admin_client(self.settings)
        self.meta = AIOKafkaConsumer(**kafka_client_options(self.settings), enable_auto_commit=False, group_id=None)
        # linger 0: the latency phase sends paced single records and must not wait for a batch
        self.producer = AIOKafkaProducer(**kafka_client_options(self.settings), acks="all", enable_idempotence=True,
                                         max_batch_size=256 * 1024)
        await self.admin.start()
        self._started.append(self.admin.close)
        await self.meta.start()
        self._started.append(self.meta.stop)
        await self.producer.start()
        self._started.append(self.producer.stop)

    async def close(self) -> None:
        while self._started:
            closer = self._started.pop()
            try:
                await closer()
            except Exception as exc:  # noqa: BLE001 - best effort on the way out
                print(f"[bench] closing kafka client: {exc!r}", file=sys.stderr)

    async def partitions(self, topic: str) -> list[TopicPartition]:
        if topic not in self._partitions:
            found = self.meta.partitions_for_topic(topic)
            for _ in range(20):
                if found:
                    break
                await self.meta._client.force_metadata_update()  # noqa: SLF001 - no public refresh
                found = self.meta.partitions_for_topic(topic)
                if not found:
                    await asyncio.sleep(0.25)
            if not found:
                raise BenchError(f"topic {topic} does not exist")
            self._partitions[topic] = [TopicPartition(topic, p) for p in sorted(found)]
        return self._partitions[topic]

    async def end_offsets(self, topics: Iterable[str]) -> dict[TopicPartition, int]:
        tps = [tp for topic in topics for tp in await self.partitions(topic)]
        return dict(await self.meta.end_offsets(tps))

    async def count(self, *topics: str) -> int:
        """Records in ``topics`` (sum of end offsets; these topics are never truncated here)."""
        return sum((await self.end_offsets(topics)).values())

    async def committed(self, group: str, ends: dict[TopicPartition, int]) -> int:
        """Records of ``ends``' partitions that ``group`` has committed (capped at the end offsets).

        A freshly started broker answers "coordinator not available" for a few seconds; that
        counts as nothing committed yet (the caller samples again), never as a failed phase.
        """
        try:
            offsets = await self.admin.list_consumer_group_offsets(group)
        except (GroupCoordinatorNotAvailableError, NotCoordinatorForGroupError, CoordinatorLoadInProgressError):
            return 0
        total = 0
        for tp, end in ends.items():
            meta = offsets.get(tp)
            if meta is not None and meta.offset > 0:
                total += min(meta.offset, end)
        return total

    async def publish_many(self, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
        """Publish every (key, value) as fast as the producer takes them; return once all are acked."""
        pending: list[asyncio.Future[Any]] = []
        sent = 0
        for key, value in records:
            pending.append(await self.producer.send(topic, value, key=key))
            sent += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return sent

    async def read_all(self, topic: str, *, timeout: float = 60.0) -> list[ConsumerRecord[bytes, bytes]]:
        """Every record now in ``topic`` (no consumer group), within ``timeout`` seconds."""
        reader = AIOKafkaConsumer(**kafka_client_options(self.settings), enable_auto_commit=False, group_id=None,
                                  max_partition_fetch_bytes=4 * 1024 * 1024)
        await reader.start()
        try:
            tps = await self.partitions(topic)
            reader.assign(tps)
            await reader.seek_to_beginning(*tps)
            end = await reader.end_offsets(tps)
            out: list[ConsumerRecord[bytes, bytes]] = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                positions = [await reader.position(tp) for tp in tps]
                if all(pos >= end[tp] for pos, tp in zip(positions, tps, strict=True)):
                    break
                batch = await reader.getmany(timeout_ms=200, max_records=10_000)
                for records in batch.values():
                    out.extend(records)
            return out
        finally:
            await reader.stop()


# ----------------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` in seconds (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kb(pid: int, key: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status, e.g. ``VmHWM`` (peak RSS) or ``VmRSS``."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def children_of(ppid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == ppid:
            found.append(int(entry))
    return found


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


@dataclass
class ServiceProcess:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def peak_rss_mb(self) -> float | None:
        kb = proc_status_kb(self.pid, "VmHWM")
        return round(kb / 1024, 1) if kb is not None else None


class Processes:
    """Service processes started like tests/conftest.py starts them (``uvicorn --factory``)."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[ServiceProcess] = []
        logs.mkdir(parents=True, exist_ok=True)

    def launch(self, settings: Settings, name: str) -> ServiceProcess:
        port = free_port()
        env = {**os.environ, "AUTOMATION_NAMESPACE": settings.namespace, "AUTOMATION_SERVICE_NAME": name,
               "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
               "AUTOMATION_DATABASE_URL": settings.database_url}
        log = self.logs / f"{settings.namespace}.{name}.{port}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", f"{PACKAGES[name]}.main:create_app",
             "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )
        service = ServiceProcess(name, port, process, log)
        self.running.append(service)
        return service

    def launch_helper(self, name: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        log = self.logs / f"{name}.log"
        return subprocess.Popen(list(argv), stdout=log.open("wb"), stderr=subprocess.STDOUT)

    async def wait_ready(self, *services: ServiceProcess, timeout: float = 90.0) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            for service in services:
                deadline = time.monotonic() + timeout
                while True:
                    if not service.alive():
                        print(tail(service.log), file=sys.stderr)
                        raise BenchError(f"{service.name} exited: {last_line(service.log)} (log: {service.log})")
                    try:
                        if (await client.get(f"{service.url}/health/ready")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        print(tail(service.log), file=sys.stderr)
                        raise BenchError(f"{service.name} not ready after {timeout}s (log: {service.log})")
                    await asyncio.sleep(0.2)

    async def stop(self, service: ServiceProcess) -> None:
        if service.alive():
            service.process.terminate()
            try:
                await asyncio.to_thread(service.process.wait, 20)
            except subprocess.TimeoutExpired:
                service.process.kill()
                await asyncio.to_thread(service.process.wait, 10)
        if service in self.running:
            self.running.remove(service)

    def kill_all(self) -> None:
        """Last resort on the way out (exceptions, signals): SIGTERM then SIGKILL our own children."""
        for service in list(self.running):
            if service.alive():
                service.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for service in list(self.running):
            try:
                service.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                service.process.kill()
        self.running.clear()


def last_line(path: Path) -> str:
    lines = [line for line in tail(path).splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else "<empty log>"


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "<no log>"


class CpuMeter:
    """CPU seconds used by named processes (and Postgres backends) between start() and stop()."""

    def __init__(self, pids: dict[str, int], postmaster: int | None) -> None:
        self.pids = pids
        self.postmaster = postmaster
        self._start: dict[str, float] = {}
        self._pg_start: dict[int, float] = {}
        self._busy = 0.0
        self._t = 0.0

    def _pg(self) -> dict[int, float]:
        if self.postmaster is None:
            return {}
        pids = [self.postmaster, *children_of(self.postmaster)]
        return {pid: cpu for pid in pids if (cpu := proc_cpu_seconds(pid)) is not None}

    def start(self) -> CpuMeter:
        self._start = {name: proc_cpu_seconds(pid) or 0.0 for name, pid in self.pids.items()}
        self._pg_start = self._pg()
        self._busy = machine_busy_seconds()
        self._t = time.monotonic()
        return self

    def stop(self) -> dict[str, Any]:
        wall = time.monotonic() - self._t
        used = {}
        for name, pid in self.pids.items():
            now = proc_cpu_seconds(pid)
            used[name] = round(now - self._start[name], 2) if now is not None else None
        pg_now = self._pg()
        used["postgres"] = round(sum(cpu - self._pg_start.get(pid, 0.0) for pid, cpu in pg_now.items()), 2)
        busy = machine_busy_seconds() - self._busy
        ours = sum(v for v in used.values() if v is not None)
        return {"wall_seconds": round(wall, 2), "cpu_seconds": used,
                "machine_busy_cores": round(busy / wall, 2) if wall > 0 else None,
                # CPU the rest of the machine used meanwhile (other stacks, test suites): noise
                "other_processes_cores": round(max(0.0, busy - ours) / wall, 2) if wall > 0 else None}


# ----------------------------------------------------------------------------------- progress and maths


@dataclass
class Progress:
    samples: list[tuple[float, int]]  # (monotonic time, records done)
    total: int
    done: bool

    @property
    def last(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def t_start(self) -> float | None:
        """Time of the last sample before any progress (conservative: the work began after it)."""
        before = None
        for t, value in self.samples:
            if value > 0:
                return before if before is not None else t
            before = t
        return None

    def t_done(self) -> float | None:
        return next((t for t, value in self.samples if value >= self.total), None)

    def backlog_rate(self) -> tuple[float | None, float | None]:
        """(records/s, seconds) from the first progress to all done (or to the last sample if capped)."""
        start = self.t_start()
        end = self.t_done() if self.done else self.samples[-1][0]
        if start is None or end is None or end <= start:
            return None, None
        return min(self.last, self.total) / (end - start), end - start

    def steady_rate(self, low: float = 0.1, high: float = 0.9) -> float | None:
        """records/s between the samples where ``low`` and ``high`` of the final count were reached."""
        final = self.last
        if final < 20:
            return None
        first = next(((t, v) for t, v in self.samples if v >= low * final), None)
        second = next(((t, v) for t, v in self.samples if v >= high * final), None)
        if first is None or second is None or second[0] <= first[0] or second[1] <= first[1]:
            return None
        return (second[1] - first[1]) / (second[0] - first[0])

    def series(self, points: int = 120) -> list[tuple[float, int]]:
        """A downsampled (seconds since start, done) curve for the JSON record."""
        if not self.samples:
            return []
        t0 = self.samples[0][0]
        step = max(1, len(self.samples) // points)
        picked = self.samples[::step]
        if picked[-1] != self.samples[-1]:
            picked.append(self.samples[-1])
        return [(round(t - t0, 2), v) for t, v in picked]


async def watch(measure: Callable[[], Awaitable[int]], *, total: int, timeout: float, interval: float = 0.2,
                alive: Callable[[], bool] | None = None) -> Progress:
    """Sample ``measure`` every ``interval`` until it reaches ``total`` or ``timeout`` elapses."""
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    while True:
        value = await measure()
        now = time.monotonic()
        samples.append((now, value))
        if value >= total:
            return Progress(samples, total, True)
        if now > deadline or (alive is not None and not alive()):
            return Progress(samples, total, False)
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - now)))


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile; ``math.inf`` entries (lost samples) count as slower than anything."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
