"""Federation: the pool of outgoing streams, the incoming streams, dialback
keys, the ``s2s_access`` policy and the router's ``route/remote`` seam.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from typing import TYPE_CHECKING, Any, Optional

from ..jid import JID
from ..stanza import STANZA_TAGS, StanzaError, StanzaEvent
from ..xml import Element
from . import dialback
from .certs import S2STLS
from .incoming import S2SIn
from .outgoing import ESTABLISHED, S2SOut
from .resolver import Resolver

if TYPE_CHECKING:
    from ..server import Server

log = logging.getLogger(__name__)

SECRET_ENV = "XMPPD_DIALBACK_SECRET"
FAMILIES = {"ipv4": socket.AF_INET, "inet": socket.AF_INET,
            "ipv6": socket.AF_INET6, "inet6": socket.AF_INET6}


class S2SManager:
    def __init__(self, server: Server) -> None:
        cfg = server.config
        self.server = server
        mode = cfg["s2s_use_starttls"]
        self.starttls: str = "optional" if mode == "true" else mode
        secret = cfg["s2s_dialback_secret"] or os.environ.get(SECRET_ENV) or \
            secrets.token_hex(32)
        self.secret = secret.encode()
        self.access_rule = cfg["s2s_access"]
        self.idle_timeout: float = cfg["s2s_timeout"]
        self.negotiation_timeout: float = cfg["negotiation_timeout"]
        self.connect_timeout: float = cfg["outgoing_s2s_timeout"]
        self.dns_timeout: float = cfg["s2s_dns_timeout"]
        self.max_retry_delay: float = cfg["s2s_max_retry_delay"]
        self.max_queue: int = cfg["max_fsm_queue"]
        self.families = [FAMILIES[f] for f in cfg["outgoing_s2s_families"]]
        self.max_stanza_size = max(
            [lc.max_stanza_size for lc in cfg.listen if lc.module == "ejabberd_s2s_in"] or
            [524288])
        self.resolver = Resolver(cfg["s2s_hosts"], cfg["outgoing_s2s_port"], self.dns_timeout)
        self.tls = S2STLS(server)
        self.outgoing: dict[tuple[str, str], S2SOut] = {}
        self.incoming: set[S2SIn] = set()
        self.retry: dict[str, tuple[float, float, str, str]] = {}
        self._sweeper: Optional[asyncio.Task[None]] = None

    # -- domains and policy ----------------------------------------------------
    def is_local(self, domain: str) -> bool:
        router = self.server.router
        return domain in self.server.hosts or domain in router.components or \
            domain in router.remote_components

    def default_domain(self) -> str:
        return next(iter(self.server.hosts))

    def allowed(self, remote: str) -> bool:
        """``s2s_access``: may ``remote`` federate with us?"""
        try:
            jid = JID(None, remote, None, prepped=True)
        except Exception:  # noqa: BLE001 - a bad domain is simply not allowed
            return False
        return bool(self.server.access.access(self.access_rule, jid))

    def order_addresses(self, infos: list[Any]) -> list[Any]:
        """getaddrinfo results filtered and ordered by ``outgoing_s2s_families``."""
        out: list[Any] = []
        for fam in self.families:
            out.extend(i for i in infos if i[0] == fam)
        return out

    # -- routing (the router's route/remote event) ---------------------------------
    def route(self, ev: StanzaEvent) -> Optional[bool]:
        local = ev.from_jid.domain
        remote = ev.to_jid.domain
        if not self.is_local(local):
            log.warning("s2s: not relaying %s from %s to %s", ev.kind, local, remote)
            return None
        if not self.allowed(remote):
            return ev.error("forbidden", text=f"federation with {remote} is not allowed "
                                              "by this server")
        held = self._held(remote)
        if held is not None:
            return ev.error(held[0], text=held[1])
        self.stream(local, remote).send(ev.stanza)
        return True

    def stream(self, local: str, remote: str) -> S2SOut:
        """The outgoing stream for a domain pair, created on demand."""
        out = self.outgoing.get((local, remote))
        if out is None or out.closed:
            out = self.outgoing[(local, remote)] = S2SOut(self, local, remote)
        return out

    def _held(self, remote: str) -> Optional[tuple[str, str]]:
        entry = self.retry.get(remote)
        if entry is None or time.monotonic() >= entry[0]:
            return None
        return entry[2], entry[3]

    def bounce(self, el: Element, condition: str, text: str) -> None:
        kind = STANZA_TAGS.get(el.tag)
        if kind is None:
            return
        type_ = el.get("type") or ("normal" if kind == "message" else
                                   "available" if kind == "presence" else "get")
        self.server.router.bounce(el, StanzaError(condition, text=text), kind, type_, None)

    # -- dialback verification -------------------------------------------------
    def verify_key(self, local: str, remote: str, stream_id: str,
                   key: str) -> asyncio.Future[str]:
        """Ask ``remote``'s authoritative server about a key given to our stream."""
        loop = asyncio.get_running_loop()
        if self.is_local(remote):
            fut: asyncio.Future[str] = loop.create_future()
            ok = dialback.key_matches(self.secret, local, remote, stream_id, key)
            fut.set_result("valid" if ok else "invalid")
            return fut
        if self._held(remote) is not None:
            fut = loop.create_future()
            fut.set_result("remote-connection-failed")
            return fut
        fut = self.stream(local, remote).request_verify(stream_id, key)

        def expire() -> None:
            if not fut.done():
                fut.set_result("remote-server-timeout")
        handle = loop.call_later(self.negotiation_timeout, expire)
        fut.add_done_callback(lambda _: handle.cancel())
        return fut

    # -- stream bookkeeping ------------------------------------------------------
    def outgoing_established(self, out: S2SOut) -> None:
        self.retry.pop(out.remote, None)

    def outgoing_failed(self, out: S2SOut, condition: str, text: str) -> None:
        prev = self.retry.get(out.remote)
        delay = min(self.max_retry_delay, prev[1] * 2 if prev else 1.0)
        self.retry[out.remote] = (time.monotonic() + delay, delay, condition, text)

    def outgoing_closed(self, out: S2SOut) -> None:
        if self.outgoing.get((out.local, out.remote)) is out:
            del self.outgoing[(out.local, out.remote)]

    def incoming_authenticated(self, stream: S2SIn) -> None:
        pass

    def incoming_from(self, ip: str) -> int:
        """Incoming streams from one address (``max_sessions_per_ip``)."""
        return sum(1 for s in self.incoming if s.conn.peer_ip == ip)

    def incoming_closed(self, stream: S2SIn) -> None:
        self.incoming.discard(stream)

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> None:
        self._sweeper = asyncio.ensure_future(self._sweep())

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for s in list(self.incoming):
            s.stream_error("system-shutdown", "the server is shutting down")
        for out in list(self.outgoing.values()):
            if out.state == ESTABLISHED:
                out.close()
            else:
                out.fail("remote-server-timeout", "the server is shutting down")

    async def _sweep(self) -> None:
        """Close idle streams and incoming streams that never authenticate."""
        interval = max(0.5, min(5.0, self.idle_timeout / 4, self.negotiation_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for s in list(self.incoming):
                if not s.authed and now - s.created > self.negotiation_timeout:
                    s.stream_error("connection-timeout", "negotiation took too long")
                elif now - s.last_recv > 2 * self.idle_timeout:
                    # the sending side closes first (after s2s_timeout): nothing in flight
                    s.stream_error("connection-timeout", "idle for too long")
            for out in list(self.outgoing.values()):
                if out.state == ESTABLISHED and now - out.last_used > self.idle_timeout:
                    log.info("s2s out: closing idle stream %s -> %s", out.local, out.remote)
                    out.close()

    def connections(self) -> list[dict[str, Any]]:
        streams: list[Any] = [*self.incoming, *self.outgoing.values()]
        return [s.describe() for s in streams]
