"""API contract fuzzing: every operation of every service, generated from its OpenAPI, on the
real stack — zero server errors, and every answer documented (status, content type, schema).

Schemathesis (its CLI, ``st run``) turns each service's ``/openapi.json`` into hostile requests:
schema examples, boundary and negative values (coverage), random inputs (fuzzing), and stateful
sequences along the links it infers (create a rule, then read, patch, deploy or delete it). Each
service runs as a real process in a namespace of its own, so rules a fuzzer creates and events it
sends never reach an executor that could call the URLs it made up. Tokens of two tenants cover
every role. The seed is fixed; ``FUZZ_EXAMPLES`` (``make fuzz``: 1,000, with the widest and
the narrowest token) sets examples per operation. New routes are covered as soon as they appear in a service's OpenAPI.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from automation_shared.auth import issue_token
from automation_shared.testing import settings_for, unique_namespace

from tests.conftest import SERVICES, start_stack

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
SEED = int(os.environ.get("FUZZ_SEED", "20261123"))
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
# two tenants, every role; FUZZ_PROFILES="fuzz-a/admin,fuzz-b/viewer" narrows a long run
PROFILES = tuple(tuple(profile.split("/", 1)) for profile in os.environ.get(
    "FUZZ_PROFILES", "fuzz-a/admin,fuzz-b/manager,fuzz-a/approver,fuzz-b/viewer").split(","))
ST = Path(sys.executable).with_name("st")
BUDGET_SECONDS = max(300, EXAMPLES * 12 * len(PROFILES))
"""Wall-clock allowance of one service's run: about 3 s per example per profile on this 2-core machine."""


def fuzz(url: str, token: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ST), "run", f"{url}/openapi.json", "--header", f"Authorization: Bearer {token}", "--checks", CHECKS,
         "--max-examples", str(EXAMPLES), "--seed", str(SEED), "--no-color",
         # the live stream never ends while it follows (by design: Server-Sent Events); the fuzzer
         # would wait on it until its budget; tests/test_stream_and_export.py covers the route
         "--exclude-path", "/api/v1/timeline/stream"],
        capture_output=True, text=True, timeout=BUDGET_SECONDS, check=False,
    )


@pytest.mark.timeout(BUDGET_SECONDS * len(PROFILES) + 120)
@pytest.mark.parametrize("service", list(SERVICES))
async def test_every_operation_answers_as_documented_and_never_5xx(service: str,
                                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = settings_for(unique_namespace("fuzz"), "fuzz-tests")
    stack = await start_stack(settings, tmp_path_factory.mktemp(f"fuzz-{service}"), names=[service])
    try:
        failures = []
        for tenant, role in PROFILES:
            token = issue_token(settings, tenant, [role], user_id=f"{role}-user")
            result = await asyncio.to_thread(fuzz, stack.url(service), token)
            tail = result.stdout[-6000:]
            print(f"--- {service} as {tenant}/{role}\n{tail}")
            if result.returncode != 0:
                failures.append(f"{service} as {tenant}/{role} (exit {result.returncode}):\n{tail}\n"
                                f"{result.stderr[-2000:]}")
        assert not failures, "\n\n".join(failures)
        for name, process in stack.services.items():
            assert process.alive(), f"{name} died under fuzzing:\n{process.log.read_text()[-3000:]}"
    finally:
        await stack.stop()
