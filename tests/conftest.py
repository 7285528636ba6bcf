"""End-to-end fixtures: the services as real processes on the test stack.

Each stack uses a fresh namespace (topics, consumer groups, schemas). Services are started
with ``uvicorn --factory`` exactly as ``make up`` starts them, on free loopback ports.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from automation_shared.settings import Settings
from automation_shared.testing import (
    KafkaProbe,
    WebhookReceiver,
    prepare_namespace,
    settings_for,
    unique_namespace,
    wait_until,
)

SERVICES = {
    "trigger-detector": "trigger_detector",
    "executor": "executor",
    "approvals": "approvals",
    "timeline-projector": "timeline_projector",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServiceProcess:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no lease release, no offset commit."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


@dataclass
class Stack:
    settings: Settings
    logs: Path
    env: Mapping[str, str] = field(default_factory=dict)
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return self.services[name].url

    def launch(self, name: str, *, package: str | None = None) -> ServiceProcess:
        """Start one service process (``name`` may be a replica label like ``executor-2``)."""
        package = package or SERVICES[name]
        port = free_port()
        env = {**os.environ, **self.env, "AUTOMATION_NAMESPACE": self.settings.namespace,
               "AUTOMATION_SERVICE_NAME": name.split("#")[0],
               "KAFKA_BOOTSTRAP_SERVERS": self.settings.kafka_bootstrap_servers,
               "AUTOMATION_DATABASE_URL": self.settings.database_url}
        log = self.logs / f"{name}.{port}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", f"{package}.main:create_app", "--host", "127.0.0.1",
             "--port", str(port), "--no-access-log"],
            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )
        service = ServiceProcess(name, port, process, log)
        self.services[name] = service
        return service

    async def wait_ready(self, *services: ServiceProcess) -> None:
        async with httpx.AsyncClient() as client:
            for service in services or tuple(self.services.values()):
                async def ready(service: ServiceProcess = service) -> bool:
                    assert service.alive(), f"{service.name} exited:\n{service.log.read_text()[-3000:]}"
                    try:
                        return (await client.get(f"{service.url}/health/ready")).status_code == 200
                    except httpx.TransportError:
                        return False
                await wait_until(ready, timeout=90, what=f"{service.name} ready")

    async def stop(self) -> None:
        for service in self.services.values():
            if service.alive():
                service.process.terminate()
        for service in self.services.values():
            try:
                await asyncio.to_thread(service.process.wait, 20)
            except subprocess.TimeoutExpired:
                service.process.kill()


async def start_stack(settings: Settings, logs: Path, names: Iterable[str] = SERVICES,
                      env: Mapping[str, str] | None = None) -> Stack:
    """Migrate a fresh namespace and start the named services; ready when this returns."""
    await prepare_namespace(settings, SERVICES.values())
    stack = Stack(settings, logs, env or {})
    for name in names:
        stack.launch(name)
    try:
        await stack.wait_ready()
    except BaseException:
        await stack.stop()
        raise
    return stack


@pytest.fixture(scope="session")
def e2e_settings() -> Settings:
    return settings_for(unique_namespace("e2e"), "e2e-tests")


@pytest.fixture(scope="session")
async def stack(e2e_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    running = await start_stack(e2e_settings, tmp_path_factory.mktemp("service-logs"))
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture(scope="session")
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as server:
        yield server


@pytest.fixture
async def probe(e2e_settings: Settings) -> AsyncIterator[KafkaProbe]:
    async with KafkaProbe(e2e_settings) as kafka:
        yield kafka


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15) as client:
        yield client
