"""Who may use the HTTP client transports: origins, client addresses, TLS.

- **Origin** (browsers send it): a listener's ``allowed_origins``, else the
  top-level ``websocket_origin``; empty means any origin. A request without
  an ``Origin`` header (not a browser) is not checked.
- **Client address**: the TCP peer, or the last ``X-Forwarded-For`` hop when
  the peer is one of ``trusted_proxies`` (a reverse proxy). Limits
  (``max_sessions_per_ip``), access rules and logs use it.
- **Authentication over plain HTTP**: on a listener without ``tls``, clients
  may log in from loopback addresses (a browser on the same machine, or a
  local reverse proxy that terminates TLS), or through a trusted proxy that
  says ``X-Forwarded-Proto: https``. ``starttls_required: false`` on the
  listener lifts this and allows logins over plain ``ws://`` and ``http://``
  from anywhere, as ejabberd does. RFC 7395 and XEP-0206 ask for TLS.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from aiohttp import web

    from ..config import ListenConfig
    from ..server import Server


def allowed_origins(server: Server, listen: ListenConfig) -> tuple[str, ...]:
    return listen.allowed_origins or server.config["websocket_origin"]


def origin_allowed(server: Server, listen: ListenConfig, origin: Optional[str]) -> bool:
    allowed = allowed_origins(server, listen)
    if not allowed or origin is None:
        return True
    return "*" in allowed or origin.rstrip("/").lower() in allowed


def cors_headers(server: Server, listen: ListenConfig, origin: Optional[str]) -> dict[str, str]:
    """CORS response headers for a browser request from ``origin``."""
    allowed = allowed_origins(server, listen)
    headers = {"Access-Control-Allow-Methods": "GET, POST, OPTIONS",
               "Access-Control-Allow-Headers": "Content-Type",
               "Access-Control-Max-Age": "86400"}
    if not allowed or "*" in allowed:
        headers["Access-Control-Allow-Origin"] = "*"
    elif origin is not None and origin_allowed(server, listen, origin):
        headers["Access-Control-Allow-Origin"] = origin
        headers["Vary"] = "Origin"
    return headers


@lru_cache(maxsize=64)
def _networks(masks: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(m, strict=False) for m in masks)


def _address(ip: str) -> Optional[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def is_loopback(ip: str) -> bool:
    addr = _address(ip)
    return addr is not None and addr.is_loopback


def _trusted(server: Server, ip: str) -> bool:
    masks = server.config["trusted_proxies"]
    if not masks:
        return False
    addr = _address(ip)
    return addr is not None and any(addr in net for net in _networks(masks))


class Peer:
    """Where an HTTP client comes from, and whether it may authenticate."""

    __slots__ = ("ip", "may_login", "tls")

    def __init__(self, server: Server, listen: ListenConfig, request: web.BaseRequest) -> None:
        remote = request.remote or ""
        self.tls = listen.tls
        self.ip = remote
        forwarded_https = False
        if _trusted(server, remote):
            hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
            if hops and hops[-1] and _address(hops[-1]) is not None:
                self.ip = hops[-1]
            forwarded_https = request.headers.get("X-Forwarded-Proto", "").lower() == "https"
        # may this client log in over this listener?
        self.may_login = self.tls or forwarded_https or not listen.starttls_required or \
            is_loopback(self.ip)


PLAIN_REFUSED = ("logging in over plain HTTP is only allowed from loopback here: "
                 "use wss:// or https:// (TLS)")
