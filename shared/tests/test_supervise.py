"""Background loops are restarted after a crash instead of dying silently."""

from __future__ import annotations

import asyncio

import pytest
from automation_shared import metrics
from automation_shared.service import supervise


async def test_a_crashing_loop_is_restarted_and_counted() -> None:
    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError("lost the connection in a way nobody foresaw")

    before = metrics.BACKGROUND_RESTARTS.labels("supervise-test", "flaky")._value.get()  # noqa: SLF001
    await asyncio.wait_for(supervise("flaky", flaky, service="supervise-test", first_delay=0.01), timeout=5)
    assert runs == 3  # crashed twice, restarted twice, then returned normally
    assert metrics.BACKGROUND_RESTARTS.labels("supervise-test", "flaky")._value.get() == before + 2  # noqa: SLF001


async def test_a_loop_that_returns_is_not_restarted_and_cancellation_passes_through() -> None:
    calls = 0

    async def done() -> None:
        nonlocal calls
        calls += 1

    await supervise("done", done, service="supervise-test")
    assert calls == 1

    async def forever() -> None:
        await asyncio.sleep(3600)

    task = asyncio.create_task(supervise("forever", forever, service="supervise-test"))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
