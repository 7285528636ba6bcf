"""The executor's outbound HTTP: one guarded client for every action, and one bounded exchange.

One ``aiohttp.ClientSession`` serves the process (connection pooling), built by
:func:`new_client` and nowhere else, because only its connector enforces the SSRF guard
(``adapters.ssrf``). Cookies are never kept (one tenant's endpoint must not see another's),
proxies from the environment are not used, redirects are never followed (a redirect to an
internal address would be a way around the guard), and answers are not decompressed: we ask
for ``Accept-Encoding: identity`` and read raw bytes, so a gzip bomb stays the few kilobytes it
was sent as.

:func:`exchange` sends one :class:`~executor.domain.actions.http.HttpRequest` under a total
deadline (``asyncio.timeout`` around resolution, connection, sending and reading: per-phase
timeouts let a receiver that drips its answer byte by byte outlive the step's lease) and reads
at most :data:`~executor.domain.actions.http.RESPONSE_CAP_BYTES` of the answer.

Why aiohttp and not httpx: the executor sends thousands of webhooks per second on two cores,
and the client's CPU per request decides that rate. Measured on this machine against the
benchmark's local receiver: httpx 1.3 ms of CPU per request alone and 3.6 ms at 32 concurrent
requests (httpcore's pool bookkeeping grows with the pool), aiohttp 0.37 ms and 0.24 ms.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
from automation_shared.egress import EgressPolicy, check_url
from automation_shared.settings import Settings

from executor.adapters.ssrf import GuardedConnector
from executor.domain.actions.base import ActionRefused
from executor.domain.actions.http import RESPONSE_CAP_BYTES, HttpAnswer, HttpRequest


class Unreachable(Exception):
    """No answer came back (timeout, DNS failure, refused or reset connection): worth retrying."""

    def __init__(self, message: str, *, duration_ms: int) -> None:
        super().__init__(message)
        self.duration_ms = duration_ms


def egress_policy(settings: Settings) -> EgressPolicy:
    """The operator's allow-list from ``settings.egress_allow`` (``AUTOMATION_EGRESS_ALLOW``; default: none).

    Raises:
        ValueError: an entry of the list is malformed.
    """
    return EgressPolicy.parse(str(getattr(settings, "egress_allow", "") or ""))


def new_client(settings: Settings, *, max_connections: int = 100) -> aiohttp.ClientSession:
    """The process's HTTP client for actions (call inside the running event loop).

    ``max_connections`` should be at least the number of steps performed at once, so a step
    never queues for a connection behind other tenants' slow requests.
    """
    connector = GuardedConnector(egress_policy(settings), limit=max_connections, limit_per_host=0,
                                 ttl_dns_cache=60)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
                                 trust_env=False)


def guard_of(client: aiohttp.ClientSession) -> EgressPolicy:
    """The egress policy ``client`` enforces.

    Raises:
        TypeError: ``client`` was not built by :func:`new_client`, so nothing guards its connections.
    """
    connector = client.connector
    if not isinstance(connector, GuardedConnector):
        raise TypeError("the actions' HTTP client must be built by executor.adapters.http.new_client: only its "
                        "connector checks the addresses it connects to (SSRF guard)")
    policy: EgressPolicy = connector.policy
    return policy


async def exchange(client: aiohttp.ClientSession, request: HttpRequest, policy: EgressPolicy) -> HttpAnswer:
    """Send ``request`` once, within its total deadline, and read the head of the answer.

    Raises:
        EgressRefused: the destination is refused (from the URL, or from an address it resolves to).
        ActionRefused: the URL cannot be requested at all.
        Unreachable: no answer: timeout, DNS failure, connection refused or reset, malformed answer.
    """
    check_url(request.url, policy)
    started = time.perf_counter()

    def elapsed_ms() -> int:
        return int((time.perf_counter() - started) * 1000)

    try:
        async with asyncio.timeout(request.timeout_seconds):
            async with client.request(request.method, request.url, data=request.body, headers=list(request.headers),
                                      allow_redirects=False, auto_decompress=False) as response:
                head, truncated = await read_capped(response.content, RESPONSE_CAP_BYTES)
                status = response.status
    except aiohttp.InvalidURL as exc:
        raise ActionRefused(f"the URL cannot be requested: {exc}") from None
    except TimeoutError:
        raise Unreachable(f"no complete answer within the step's {request.timeout_seconds:g} s deadline",
                          duration_ms=elapsed_ms()) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise Unreachable(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                          duration_ms=elapsed_ms()) from None
    return HttpAnswer(status=status, head=head, truncated=truncated, duration_ms=elapsed_ms())


async def read_capped(stream: aiohttp.StreamReader, cap: int) -> tuple[bytes, bool]:
    """At most ``cap`` bytes of ``stream``, and whether more was there. Never reads past ``cap + 1``."""
    chunks: list[bytes] = []
    size = 0
    while size <= cap:
        chunk = await stream.read(cap + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    body = b"".join(chunks)
    return body[:cap], size > cap
