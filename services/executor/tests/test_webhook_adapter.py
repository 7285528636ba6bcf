"""The webhook adapter against a real local HTTP server: what it records of an answer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from executor.adapters.webhook import EXCERPT_CHARS, new_client, send_webhook
from executor.domain.webhooks import WebhookRequest


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def nul_answer(_request: web.Request) -> web.Response:
        return web.Response(body=b"ok\x00done" + b"x" * 10_000, status=200)

    app = web.Application()
    app.router.add_post("/nul", nul_answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_an_answer_with_a_nul_byte_is_recorded_without_it_and_cut_to_the_excerpt(server: str) -> None:
    request = WebhookRequest(method="POST", url=f"{server}/nul", headers={"content-type": "application/json"},
                             body={"a": 1}, timeout_seconds=5)
    async with new_client() as client:
        effect = await send_webhook(client, request)
    assert effect.response_status == 200
    assert effect.response_excerpt is not None
    assert "\x00" not in effect.response_excerpt
    assert effect.response_excerpt.startswith("ok\ufffddone")
    assert len(effect.response_excerpt) == EXCERPT_CHARS
