"""The addresses the WebRTC side offers as ICE candidates: those of the interface the page is served on.

aiortc gathers a host candidate on every interface of the machine (aioice's ``get_host_addresses``,
loopback left out), so a server bound to 127.0.0.1 would still tell each page its LAN and VPN
addresses and accept media on them.  aioice has no option for this, so while a server runs its
address list is replaced by the bound one: loopback offers loopback, one address offers that
address, and an unspecified bind (``0.0.0.0``, ``::``) offers every interface, as aioice does.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator


def offered(bound: str) -> list[str]:
    """The candidate addresses for a server bound to ``bound``."""
    import aioice.ice

    ip = ipaddress.ip_address(bound.split("%")[0])
    if ip.is_unspecified:
        return aioice.ice.get_host_addresses(use_ipv4=ip.version == 4, use_ipv6=True)
    return [str(ip)]


@contextlib.contextmanager
def candidates_on(bound: str) -> Iterator[list[str]]:
    """While the block runs, WebRTC connections gather candidates only on ``offered(bound)``."""
    import aioice.ice

    addresses = offered(bound)
    own = aioice.ice.get_host_addresses

    def bound_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in addresses if (use_ipv6 if ":" in a else use_ipv4)]

    aioice.ice.get_host_addresses = bound_addresses
    try:
        yield addresses
    finally:
        aioice.ice.get_host_addresses = own
