"""Which IP sent a request, behind reverse proxies, without letting a client choose it.

The TCP peer is the client unless the peer is a trusted proxy; then `X-Forwarded-For` is
walked from the right, skipping trusted proxies, and the first other entry is the client.
Only entries appended by trusted proxies are believed: a client can prepend anything, but
its own address is appended by the first trusted proxy it reached.
"""

from collections.abc import Iterable, Sequence
from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address, ip_address

from app.config import Network

IP = IPv4Address | IPv6Address


# Memoised: every request parses its peer (a few distinct addresses: NICEPAY's, a proxy's),
# and ipaddress's parser is pure Python. Bounded, so a flood of new addresses only evicts.
@lru_cache(maxsize=4096)
def parse_ip(text: str | None) -> IP | None:
    """An address from a peer or header entry: ports, brackets and v4-mapped v6 handled."""
    if not text:
        return None
    text = text.strip().strip('"')
    if text.startswith("["):  # [v6]:port
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_networks(address: IP | None, networks: Iterable[Network]) -> bool:
    if address is not None:
        for network in networks:  # a plain loop: any() over a generator costs more, per push
            if address in network:
                return True
    return False


def resolve_client_ip(
    peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[Network]
) -> IP | None:
    """The client's IP, or None when it cannot be told (garbage where the client should be)."""
    client = parse_ip(peer)
    if not in_networks(client, trusted_proxies):
        return client
    entries = [entry for header in forwarded_for for entry in header.split(",")]
    for entry in reversed(entries):
        hop = parse_ip(entry)
        if hop is None:
            return None  # a trusted proxy appended something unreadable: believe nothing
        client = hop
        if not in_networks(hop, trusted_proxies):
            return hop
    return client
