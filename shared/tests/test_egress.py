"""The SSRF guard's pure half (``automation_shared.egress``): which URLs and addresses a rule may reach.

Given a destination, when it is judged, then internal ones are refused with a message naming
the address and why, and the operator's allow-list lets exactly its entries through.
"""

from __future__ import annotations

import ipaddress

import pytest
from automation_shared.egress import DENY_ALL, EgressPolicy, EgressRefused, check_address, check_url, refusal_reason
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1", "a loopback address"),
    ("127.255.0.9", "a loopback address"),
    ("::1", "a loopback address"),
    ("10.0.0.1", "a private address"),
    ("172.16.5.4", "a private address"),
    ("192.168.1.1", "a private address"),
    ("fd12:3456::1", "a private address"),
    ("169.254.169.254", "a cloud metadata address"),
    ("fd00:ec2::254", "a cloud metadata address"),
    ("169.254.1.1", "a link-local address"),
    ("fe80::1", "a link-local address"),
    ("224.0.0.1", "a multicast address"),
    ("ff02::1", "a multicast address"),
    ("0.0.0.0", "the unspecified address"),
    ("::", "the unspecified address"),
    ("100.64.0.1", "a carrier-grade NAT (shared) address"),
    ("192.0.2.7", "a reserved or special-purpose address"),
    ("240.0.0.1", "a reserved or special-purpose address"),
])
def test_internal_addresses_are_refused_with_their_kind(address: str, reason: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ["::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:8.8.8.8", "64:ff9b::a00:1",
                                     "2002:a00:1::1", "::10.0.0.1"])
def test_ipv4_hidden_in_ipv6_is_refused(address: str) -> None:
    reason = refusal_reason(ipaddress.ip_address(address))
    assert reason is not None and "IPv4" in reason


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None
    check_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(("url", "message"), [
    ("http://127.0.0.1:8080/hook", "refused: 127.0.0.1 is a loopback address"),
    ("http://169.254.169.254/latest/meta-data/", "refused: 169.254.169.254 is a cloud metadata address"),
    ("http://10.0.0.1/", "refused: 10.0.0.1 is a private address"),
    ("http://[::ffff:127.0.0.1]/", "refused: ::ffff:7f00:1 is an IPv4-mapped IPv6 address (of 127.0.0.1)"),
    ("http://[::1]:9000/", "refused: ::1 is a loopback address"),
    ("file:///etc/passwd", "refused: file:// is not allowed; only http and https URLs may be called"),
    ("gopher://example.com/", "refused: gopher:// is not allowed"),
    ("ftp://example.com/", "refused: ftp:// is not allowed"),
    ("http://localhost:8080/", "refused: localhost always names this machine"),
    ("http://api.localhost/", "refused: api.localhost always names this machine"),
    ("http://LOCALHOST./", "refused: localhost always names this machine"),
    ("http://2130706433/", "refused: 127.0.0.1 is a loopback address (written 2130706433)"),
    ("http://0x7f.1/", "refused: 127.0.0.1 is a loopback address (written 0x7f.1)"),
    ("http://0177.0.0.1/", "refused: 127.0.0.1 is a loopback address (written 0177.0.0.1)"),
    ("http:///nohost", "names no host"),
    ("example.com/path", "a URL without a scheme is not allowed"),
])
def test_urls_to_internal_or_non_http_destinations_are_refused(url: str, message: str) -> None:
    with pytest.raises(EgressRefused) as refused:
        check_url(url)
    assert message in str(refused.value)
    if " is a" in message or "names this machine" in message:  # an address refusal says how to allow it
        assert "AUTOMATION_EGRESS_ALLOW" in str(refused.value)


def test_a_url_with_a_public_name_passes_to_be_checked_again_when_resolved() -> None:
    destination = check_url("https://hooks.example.com/a?b=1")
    assert (destination.scheme, destination.host, destination.port, destination.address) == (
        "https", "hooks.example.com", 443, None)


def test_the_allow_list_admits_its_hosts_addresses_and_networks_only() -> None:
    policy = EgressPolicy.parse(" 127.0.0.1 , receiver.internal, *.corp.test, 10.1.0.0/16, [::1] ")
    assert check_url("http://127.0.0.1:5000/", policy).address == ipaddress.ip_address("127.0.0.1")
    assert check_url("http://[::1]:5000/", policy).port == 5000
    check_url("http://receiver.internal/", policy)
    check_address(ipaddress.ip_address("10.0.0.9"), policy, host="receiver.internal")  # listed by name
    check_address(ipaddress.ip_address("10.1.2.3"), policy, host="anything.example")  # listed network
    check_address(ipaddress.ip_address("10.0.0.9"), policy, host="a.b.corp.test")  # wildcard name
    with pytest.raises(EgressRefused, match="127.0.0.2 is a loopback address"):
        check_url("http://127.0.0.2/", policy)
    with pytest.raises(EgressRefused, match=r"10.2.0.1 is a private address \(evil.example resolves to it\)"):
        check_address(ipaddress.ip_address("10.2.0.1"), policy, host="evil.example")
    with pytest.raises(EgressRefused, match="localhost always names this machine"):
        check_url("http://localhost/", policy)
    assert EgressPolicy.parse("localhost").allows_host("localhost")
    check_url("http://localhost:1/", EgressPolicy.parse("localhost"))


def test_a_malformed_allow_list_entry_is_an_error_not_silently_ignored() -> None:
    with pytest.raises(ValueError, match="'http://x/' is neither a host name nor an address or CIDR network"):
        EgressPolicy.parse("127.0.0.1,http://x/")
    assert EgressPolicy.parse("") == DENY_ALL


@given(st.ip_addresses(v=4, network="10.0.0.0/8") | st.ip_addresses(v=4, network="192.168.0.0/16")
       | st.ip_addresses(v=4, network="127.0.0.0/8") | st.ip_addresses(v=6, network="fc00::/7")
       | st.ip_addresses(v=4, network="169.254.0.0/16"))
def test_every_address_of_an_internal_range_is_refused_in_every_spelling(
        address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    host = f"[{address}]" if address.version == 6 else str(address)
    with pytest.raises(EgressRefused, match=f"refused: {address} is "):
        check_url(f"https://{host}/x")
    if address.version == 4:
        with pytest.raises(EgressRefused, match=f"refused: {address} is "):
            check_url(f"http://{int(address)}/")
        with pytest.raises(EgressRefused, match=r"IPv4-mapped IPv6 address"):
            check_url(f"http://[::ffff:{address}]/")


def test_a_metadata_address_is_admitted_only_by_an_entry_naming_exactly_it() -> None:
    metadata = ipaddress.ip_address("169.254.169.254")
    for wide in ("169.254.0.0/16", "*.internal"):
        with pytest.raises(EgressRefused, match="cloud metadata"):
            check_address(metadata, EgressPolicy.parse(wide), host="metadata.google.internal")
    check_address(ipaddress.ip_address("169.254.10.1"), EgressPolicy.parse("169.254.0.0/16"))  # others: the network
    check_address(metadata, EgressPolicy.parse("169.254.169.254"))
    check_address(metadata, EgressPolicy.parse("metadata.google.internal"), host="metadata.google.internal")
