"""Who may talk to `serve`: the name a request is addressed to, the page it comes from, this start's token.

- ``Host``: one of this server's names with its port — the address it listens on, the loopback names
  (``localhost``, ``127.0.0.1``, ``[::1]``), this machine's name and addresses when it listens on every
  interface, and each ``--allow-host``.  A page elsewhere that makes its own name resolve to 127.0.0.1
  (DNS rebinding) still sends its own name in ``Host``, and is refused.
- ``Origin`` (browsers send it on every POST and on requests from other pages): absent, or the origin of
  one of those names.
- The token: random for each start, carried by the printed URL's fragment (``#token=…``, which browsers
  never send); the page reads it and sends ``Authorization: Bearer …`` with every request except the
  page itself.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
TOKEN_PARAMETER = "token"  # the URL fragment's parameter: http://HOST:PORT/#token=…

_AUTHORITY = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._-]+))(?::(?P<port>[0-9]{1,5}))?")
_ORIGIN = re.compile(r"(?P<scheme>https?)://(?P<authority>[^/?#]+)")
_DEFAULT_PORTS = {"http": 80, "https": 443}

Name = tuple[str, int | None]  # (host as in a URL, lower-case and IPv6 in brackets; port, None: any)


def parse_authority(text: str, default_port: int | None = None) -> Name | None:
    """``NAME``, ``NAME:PORT``, ``[IPv6]:PORT`` → (host, port); None for anything else (user info, paths,
    spaces, percent signs: nothing but a plain host and port is accepted)."""
    match = _AUTHORITY.fullmatch(text)
    if match is None:
        return None
    port = int(match["port"]) if match["port"] else default_port
    if port is not None and not 0 < port < 65536:
        return None
    if match["v6"]:
        try:
            return f"[{ipaddress.IPv6Address(match['v6'])}]", port
        except ValueError:
            return None
    return match["name"].lower(), port


def host_text(address: str) -> str:
    """An address or name as it appears in a URL's host: IPv6 in brackets, names lower-case."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return address.lower()
    return f"[{ip}]" if ip.version == 6 else str(ip)


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return address.lower() == "localhost"


def _this_machine() -> set[str]:
    """This machine's names and the addresses of all its interfaces (what a browser elsewhere may type)."""
    import ifaddr  # aioice's dependency: how aiortc finds the same addresses for its candidates

    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            names.add(host_text(ip.ip[0] if isinstance(ip.ip, tuple) else ip.ip))
    return names


def allowed_names(entries: Iterable[str]) -> list[Name]:
    """The ``--allow-host`` entries (a name alone: on any port); ValueError names the first that is not one."""
    names = []
    for entry in entries:
        name = parse_authority(entry)
        if name is None:
            raise ValueError(f"--allow-host {entry}: expected a host name or address, or NAME:PORT")
        names.append(name)
    return names


def server_names(bound: str, port: int, asked: str, allowed: Iterable[str]) -> frozenset[Name]:
    """The names requests may be addressed to, for a socket bound to ``bound``:``port`` (``asked``: the
    ``--host`` given) and the ``--allow-host`` entries."""
    hosts = {*LOOPBACK_NAMES, host_text(bound), host_text(asked)}
    if ipaddress.ip_address(bound.split("%")[0]).is_unspecified:
        hosts |= _this_machine()
    return frozenset({(host, port) for host in hosts} | set(allowed_names(allowed)))


@dataclass(frozen=True, kw_only=True)
class Access:
    token: str
    names: frozenset[Name]

    def _known(self, host: str, port: int | None) -> bool:
        return (host, port) in self.names or (host, None) in self.names

    def refusal(self, request: web.BaseRequest, needs_token: bool) -> tuple[int, str] | None:
        """(status, reason) when ``request`` must be refused; None when it may go on."""
        hosts = request.headers.getall("Host", [])
        if len(hosts) != 1:
            return 400, "a request must name one Host"
        name = parse_authority(hosts[0], 443 if request.secure else 80)
        if name is None or not self._known(*name):
            return 403, f"this server does not answer to the name {hosts[0][:100]!r}: open the address it printed"
        origins = request.headers.getall("Origin", [])
        if len(origins) > 1 or (origins and not self._same_origin(origins[0])):
            return 403, f"requests from other pages are refused (Origin {origins[0][:100]!r})"
        if needs_token and not self._has_token(request.headers.getall("Authorization", [])):
            return 401, "this needs the token in the address the server printed (.../#token=...)"
        return None

    def _same_origin(self, origin: str) -> bool:
        match = _ORIGIN.fullmatch(origin)
        if match is None:  # "null" (a sandboxed frame, a file), or anything else
            return False
        name = parse_authority(match["authority"], _DEFAULT_PORTS[match["scheme"]])
        return name is not None and self._known(*name)

    def _has_token(self, authorization: list[str]) -> bool:
        if len(authorization) != 1:
            return False
        scheme, _, given = authorization[0].partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("utf-8", "replace"), self.token.encode()
        )
