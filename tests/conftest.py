"""End-to-end fixtures: the four services as real processes on the test stack.

Each session uses a fresh namespace (topics, consumer groups, schemas). Services are started
with ``uvicorn --factory`` exactly as ``make up`` starts them, on free loopback ports.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
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


@dataclass
class Stack:
    settings: Settings
    services: dict[str, ServiceProcess]

    def url(self, name: str) -> str:
        return self.services[name].url


@pytest.fixture(scope="session")
def e2e_settings() -> Settings:
    return settings_for(unique_namespace("e2e"), "e2e-tests")


@pytest.fixture(scope="session")
async def stack(e2e_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    await prepare_namespace(e2e_settings, SERVICES.values())
    logs = tmp_path_factory.mktemp("service-logs")
    services: dict[str, ServiceProcess] = {}
    for name, package in SERVICES.items():
        port = free_port()
        env = {**os.environ, "AUTOMATION_NAMESPACE": e2e_settings.namespace, "AUTOMATION_SERVICE_NAME": name,
               "KAFKA_BOOTSTRAP_SERVERS": e2e_settings.kafka_bootstrap_servers,
               "AUTOMATION_DATABASE_URL": e2e_settings.database_url}
        log = logs / f"{name}.log"
        process = subprocess.Popen(  # noqa: ASYNC220 - spawning returns at once
            [sys.executable, "-m", "uvicorn", "--factory", f"{package}.main:create_app", "--host", "127.0.0.1",
             "--port", str(port), "--no-access-log"],
            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )
        services[name] = ServiceProcess(name, port, process, log)
    stack = Stack(e2e_settings, services)
    try:
        async with httpx.AsyncClient() as client:
            for service in services.values():
                async def ready(service: ServiceProcess = service) -> bool:
                    assert service.alive(), f"{service.name} exited:\n{service.log.read_text()[-3000:]}"
                    try:
                        return (await client.get(f"{service.url}/health/ready")).status_code == 200
                    except httpx.TransportError:
                        return False
                await wait_until(ready, timeout=90, what=f"{service.name} ready")
        yield stack
    finally:
        for service in services.values():
            service.process.terminate()
        for service in services.values():
            try:
                await asyncio.to_thread(service.process.wait, 20)
            except subprocess.TimeoutExpired:
                service.process.kill()


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
