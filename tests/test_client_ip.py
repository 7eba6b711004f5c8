"""Client-IP resolution behind reverse proxies (pure function, no server)."""

from ipaddress import ip_address, ip_network

import pytest

from app.client_ip import parse_ip, resolve_client_ip

PROXIES = [ip_network("10.0.0.0/8"), ip_network("fd00::/8")]


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("203.0.113.9", ["103.20.51.1"], "203.0.113.9"),  # untrusted peer: header ignored
        ("10.0.0.2", ["103.20.51.1"], "103.20.51.1"),
        ("10.0.0.2", ["6.6.6.6, 103.20.51.1"], "103.20.51.1"),  # client-prepended entry ignored
        ("10.0.0.2", ["6.6.6.6", "103.20.51.1, 10.0.0.7"], "103.20.51.1"),  # several headers
        ("10.0.0.2", ["103.20.51.1:4711"], "103.20.51.1"),  # port
        ("10.0.0.2", ["[2001:db8::1]:443"], "2001:db8::1"),
        ("10.0.0.2", ["2001:db8::1"], "2001:db8::1"),
        ("fd00::1", ["::ffff:103.20.51.1"], "103.20.51.1"),  # v4-mapped
        ("10.0.0.2", [], "10.0.0.2"),  # no header: the proxy itself
        ("10.0.0.2", ["10.0.0.3"], "10.0.0.3"),  # only proxies: the left-most
        ("10.0.0.2", ["103.20.51.1, garbage"], None),  # unreadable where the client should be
        ("10.0.0.2", ["unknown"], None),
        ("10.0.0.2", [""], None),
        (None, [], None),
        ("not-an-ip", [], None),
    ],
)
def test_resolve(peer: str | None, xff: list[str], expected: str | None) -> None:
    resolved = resolve_client_ip(peer, xff, PROXIES)
    assert resolved == (ip_address(expected) if expected else None)


def test_nothing_trusted_means_the_peer_always() -> None:
    assert resolve_client_ip("10.0.0.2", ["103.20.51.1"], []) == ip_address("10.0.0.2")


@pytest.mark.parametrize("text", ["1.2.3.4.5", "[::1", "999.1.1.1", "' OR 1=1 --", "ü"])
def test_parse_garbage(text: str) -> None:
    assert parse_ip(text) is None
