"""The trusted auth proxy (oauth2-proxy and the like): whose email header to believe.

A header such as ``X-Auth-Request-Email`` is only evidence when the request came
straight from the proxy: anybody else can send it too. So it is read only when the
peer address is inside ``auth_proxy.trusted_proxies``.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def trusted_address(remote_addr: str | None, networks: Sequence[str]) -> bool:
    """Whether ``remote_addr`` (the TCP peer) lies in one of ``networks`` (CIDR strings).

    An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``, from a dual-stack socket)
    counts as its IPv4 address. A missing or unparsable address is never trusted;
    an unparsable network matches nothing.
    """
    address = _address(remote_addr)
    if address is None:
        return False
    return any(
        network.version == address.version and address in network
        for network in _networks(tuple(networks))
    )


def _address(value: str | None) -> _Address | None:
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=64)
def _networks(networks: tuple[str, ...]) -> tuple[_Network, ...]:
    parsed: list[_Network] = []
    for network in networks:
        try:
            parsed.append(ipaddress.ip_network(network.strip(), strict=False))
        except ValueError:
            continue
    return tuple(parsed)
