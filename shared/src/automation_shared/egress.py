"""Where the platform may send requests on a tenant's behalf: the pure half of the SSRF guard.

A rule names URLs (webhooks, Slack incoming webhooks) that the executor calls from inside the
operator's network, so a rule must not be able to reach what only that network can reach:
loopback, private ranges, link-local (and the cloud metadata service on it), multicast, the
unspecified address, carrier-grade NAT and every other special-purpose range, nor the same
addresses hidden inside IPv6 (IPv4-mapped, NAT64, 6to4, Teredo). Only ``http`` and ``https``
are spoken.

This module decides from text alone — no DNS — so the rules API can answer 422 when a rule is
saved (:func:`check_url`), and the executor can judge each address a host name resolves to at
connect time (:func:`check_address`; its resolver lives in ``executor.adapters.ssrf``). A name
is only as safe as the addresses it resolves to, so a URL that passes :func:`check_url` with a
host name is still checked again, address by address, when it is called.

The operator's allow-list (:class:`EgressPolicy`) lets chosen hosts or networks through — a
local test receiver on ``127.0.0.1``, an internal SMS gateway — and nothing else.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES: Final = frozenset({"http", "https"})

METADATA_ADDRESSES: Final = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean instance metadata
    "169.254.170.2",  # AWS ECS task metadata and credentials
    "fd00:ec2::254",  # AWS instance metadata over IPv6
    "100.100.100.200",  # Alibaba Cloud metadata
    "168.63.129.16",  # Azure wire server (a public address that only the host answers)
))
"""Cloud metadata endpoints: named in refusals, and refused even where the range is public."""

_CGNAT: Final = ipaddress.ip_network("100.64.0.0/10")
_NAT64: Final = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_SIXTOFOUR: Final = ipaddress.ip_network("2002::/16")
_TEREDO: Final = ipaddress.ip_network("2001::/32")
_IPV4_TRANSLATED: Final = ipaddress.ip_network("::ffff:0:0:0/96")
_PRIVATE_USE: Final = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                              "fc00::/7"))
_LOCAL_NAMES: Final = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback",
                                 "metadata.google.internal", "metadata"})
_LEGACY_IPV4: Final = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$", re.IGNORECASE)


class EgressRefused(ValueError):
    """A destination the platform will not send to; the message says which and why.

    A ``ValueError`` (not an ``OSError``) on purpose: raised inside an HTTP client's resolver it
    must not be mistaken for a network failure worth retrying.
    """


@dataclass(frozen=True)
class Destination:
    """A URL that passed :func:`check_url`: where a request would go."""

    scheme: str
    host: str
    """Lower-case host name or address text, without brackets or a trailing dot."""
    port: int
    address: IPAddress | None
    """The address when the URL names one literally; ``None`` for a host name (resolve, then check)."""


@dataclass(frozen=True)
class EgressPolicy:
    """The operator's allow-list: host names and networks that may be reached although refused by default.

    A listed host name is trusted with every address it resolves to; a listed network admits
    its addresses whatever name led to them. ``*.example.internal`` lists every subdomain.
    """

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: str | Iterable[str]) -> EgressPolicy:
        """The policy of a comma-separated list (``AUTOMATION_EGRESS_ALLOW``) of hosts, addresses and CIDRs.

        Raises:
            ValueError: an entry is neither a network nor a plausible host name.
        """
        items = entries.split(",") if isinstance(entries, str) else list(entries)
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in items:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if not re.fullmatch(r"(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*",
                                entry):
                raise ValueError(f"egress allow-list entry {raw.strip()!r} is neither a host name nor an "
                                 "address or CIDR network")
            hosts.add(entry)
        return cls(hosts=frozenset(hosts), networks=tuple(networks))

    def allows_host(self, host: str) -> bool:
        """Whether ``host`` (a name, lower case) is listed, itself or through a ``*.`` entry."""
        name = host.lower().rstrip(".")
        if name in self.hosts:
            return True
        return any(entry.startswith("*.") and name.endswith(entry[1:]) for entry in self.hosts)

    def allows_address(self, address: IPAddress) -> bool:
        """Whether ``address`` is inside a listed network."""
        return any(address.version == network.version and address in network for network in self.networks)

    def lists_host(self, host: str) -> bool:
        """Whether ``host`` itself is listed (not through a ``*.`` entry)."""
        return host.lower().rstrip(".") in self.hosts

    def lists_address(self, address: IPAddress) -> bool:
        """Whether ``address`` itself is listed (a single-address entry, not a wider network)."""
        return any(network.num_addresses == 1 and address in network for network in self.networks
                   if address.version == network.version)


DENY_ALL: Final = EgressPolicy()
"""No exceptions: what a rule is checked against when it is saved, unless the operator listed some."""


def refusal_reason(address: IPAddress) -> str | None:
    """Why ``address`` is no place to send a tenant's request, or ``None`` when it is a public address.

    The reason reads after the address: ``"10.0.0.1 is a private address"``.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            kind = "IPv4-mapped" if address.ipv4_mapped is not None else "IPv4-embedding"
            return f"an {kind} IPv6 address (of {embedded}), which could reach IPv4 ranges unchecked"
        if address.scope_id:
            return "a scoped (zone) IPv6 address"
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "a carrier-grade NAT (shared) address"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "a site-local address"
    if any(address.version == network.version and address in network for network in _PRIVATE_USE):
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a reserved or special-purpose address"
    return None


def check_address(address: IPAddress, policy: EgressPolicy = DENY_ALL, *, host: str | None = None) -> None:
    """Refuse ``address`` unless it is public or the operator allows it.

    ``host`` is the name that resolved to it, for the message and the host allow-list.

    Raises:
        EgressRefused: naming the address, the host and the reason.
    """
    # a cloud metadata address hands out the node's credentials: only an entry naming exactly it
    # (its address, or the very host name) admits it, never a wider network or a ``*.`` entry
    exact_only = address in METADATA_ADDRESSES
    if host is not None and (policy.lists_host(host) if exact_only else policy.allows_host(host)):
        return
    if policy.lists_address(address) if exact_only else policy.allows_address(address):
        return
    reason = refusal_reason(address)
    if reason is not None:
        via = ""
        if host is not None and host != str(address):
            spelled = parse_address(host) is not None
            via = f" (written {host})" if spelled else f" ({host} resolves to it)"
        raise EgressRefused(f"refused: {address} is {reason}{via}; only public addresses or hosts on the "
                            "operator's egress allow-list (AUTOMATION_EGRESS_ALLOW) may be called")


def check_url(url: str, policy: EgressPolicy = DENY_ALL) -> Destination:
    """The destination of ``url`` when nothing in its text forbids calling it.

    Checks the scheme, the presence of a host, a literal address (in any spelling a resolver
    would accept, such as ``2130706433`` or ``0x7f.1``) and names that always mean this machine
    (``localhost``). A host name passes; its addresses are checked when it is resolved.

    Raises:
        EgressRefused: the URL may not be called, and why.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise EgressRefused(f"refused: {url!r} is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        shown = f"{scheme}://" if scheme else "a URL without a scheme"
        raise EgressRefused(f"refused: {shown} is not allowed; only http and https URLs may be called")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise EgressRefused(f"refused: {url!r} names no host")
    port = port or (443 if scheme == "https" else 80)
    address = parse_address(host)
    if address is not None:
        check_address(address, policy, host=host)
        return Destination(scheme=scheme, host=host, port=port, address=address)
    if not policy.allows_host(host) and (host in _LOCAL_NAMES or host.endswith(".localhost")):
        raise EgressRefused(f"refused: {host} always names this machine (a loopback address); only public "
                            "addresses or hosts on the operator's egress allow-list (AUTOMATION_EGRESS_ALLOW) "
                            "may be called")
    return Destination(scheme=scheme, host=host, port=port, address=None)


def parse_address(host: str) -> IPAddress | None:
    """The address ``host`` spells, in the standard forms or the legacy IPv4 ones; ``None`` for a name."""
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if "%" in text:  # a zone id: ip_address accepts it only for IPv6, which failed above
        return None
    if _LEGACY_IPV4.fullmatch(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _IPV4_TRANSLATED:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in network for network in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIXTOFOUR:
        return address.sixtofour
    if address in _TEREDO and address.teredo is not None:
        return address.teredo[1]
    # IPv4-compatible (::a.b.c.d, deprecated) — but not :: and ::1, which are named on their own
    if int(address) >> 32 == 0 and int(address) > 1:
        return ipaddress.IPv4Address(int(address))
    return None

