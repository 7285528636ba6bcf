"""The SSRF guard at connect time: a resolver that hands aiohttp only addresses it has checked.

``automation_shared.egress`` judges a URL's text and each address; this module applies that
judgement where it cannot be dodged. :class:`GuardedResolver` resolves a host name, checks
*every* address it resolves to (one refused address refuses the host: a name that sometimes
points inside the network is not to be trusted with the rest), and returns exactly the
addresses it checked; :class:`GuardedConnector` connects only to what its resolver returned.
So the address checked is the address connected to, and a DNS answer that changes between a
check and the connection (rebinding) has nothing to slip through. aiohttp skips the resolver
for URLs with a literal address; those are checked from the URL's text before the request
(``egress.check_url``), and a literal cannot rebind.

A refusal is :class:`~automation_shared.egress.EgressRefused`, a ``ValueError``, which aiohttp
passes through unwrapped (it wraps only ``OSError`` as a connection error), so it is recorded
as a permanent step failure rather than retried.
"""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from automation_shared.egress import EgressPolicy, check_address, parse_address


class GuardedResolver(AbstractResolver):
    """Resolves with ``inner`` (aiohttp's default resolver) and refuses hosts with any refused address."""

    def __init__(self, policy: EgressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        """The addresses of ``host``, every one checked.

        Raises:
            EgressRefused: an address of ``host`` is refused by the policy.
            OSError: the name does not resolve.
        """
        results = await self._inner.resolve(host, port, family)
        for result in results:
            address = parse_address(result["host"])
            if address is None:  # a resolver answers addresses; anything else is not one to connect to
                raise OSError(f"resolver returned {result['host']!r} for {host}, which is not an address")
            check_address(address, self.policy, host=host)
        return results

    async def close(self) -> None:
        await self._inner.close()


class GuardedConnector(aiohttp.TCPConnector):
    """A TCP connector that reaches only addresses its :class:`GuardedResolver` let through."""

    def __init__(self, policy: EgressPolicy, **kwargs: Any) -> None:
        super().__init__(resolver=GuardedResolver(policy), **kwargs)
        self.policy = policy
