"""External components (XEP-0114), ejabberd's ``ejabberd_service`` listener: gateways
and bridges (slidge, biboumi, Spectrum) that serve a domain of their own::

    listen:
      - port: 5347
        ip: 127.0.0.1
        module: ejabberd_service
        hosts:
          bridge.example.org:
            password: secret

The component opens a stream in ``jabber:component:accept`` to its domain; the server
answers with a stream id, and the component proves the shared secret with
``<handshake>hex(SHA-1(id + password))</handshake>``; the server answers
``<handshake/>``. From then on stanzas for the domain (and its users) go to that
connection, until its stream ends. Stanzas from the component must come from its
domain or a subdomain of it (``check_from``, on by default): otherwise
``invalid-from``. Errors are stream errors: ``host-unknown`` for a domain the listener
does not serve, ``not-authorized`` for a wrong secret, ``conflict`` when the domain is
served already (by another connection, or by a module such as mod_muc).

In a cluster (several nodes or ``--workers``) the component connects to one node, and
clients of every node reach it: the other nodes hand its stanzas over
(:mod:`xmppd.cluster.components`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
import weakref
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Optional

from .cluster.components import ComponentDirectory
from .jid import JID, JIDError, nameprep
from .s2s.base import S2SStream
from .s2s.outgoing import wire
from .s2s.transport import S2SConnection
from .stanza import STANZA_TAGS, StanzaEvent
from .xml import CLIENT_NS, Element
from .xmlstream import COMPONENT_NS, Event, StreamClose, StreamError, StreamOpen

if TYPE_CHECKING:
    from .config import ListenConfig
    from .server import Server

log = logging.getLogger(__name__)

HANDSHAKE = "{%s}handshake" % CLIENT_NS  # (the parser reads the component namespace so)


class ComponentStream(S2SStream):
    """One external component's connection (ordered input, stream errors and closing
    as for server streams)."""

    def __init__(self, server: Server, conn: S2SConnection, listen: ListenConfig) -> None:
        super().__init__(server.s2s, conn)
        self.conn: S2SConnection = conn
        self.listen = listen
        self.domain = ""
        self.authed = False
        self.directory: ComponentDirectory = server.component_directory

    def _handle(self, ev: Event) -> Optional[Awaitable[None]]:
        if isinstance(ev, StreamOpen):
            self._open(ev)
        elif isinstance(ev, StreamClose):
            self.close()
        elif ev.tag == HANDSHAKE:
            self._handshake(ev)
        elif ev.tag in STANZA_TAGS:
            self._stanza(ev)
        else:
            raise StreamError("unsupported-stanza-type", f"unexpected {ev.tag}")
        return None

    def _open(self, ev: StreamOpen) -> None:
        if self.header_sent:
            raise StreamError("invalid-xml", "one stream header only")
        try:
            domain = nameprep(ev.attrs.get("to", ""))
        except JIDError:
            domain = ""
        self.stream_id = secrets.token_hex(8)
        self.conn.write(self.conn.framing.header({"id": self.stream_id,
                                                  "from": domain or "invalid"}))
        self.header_sent = True
        if ev.default_ns != COMPONENT_NS:
            raise StreamError("invalid-namespace", f"components speak {COMPONENT_NS}")
        if domain not in self.listen.hosts:
            raise StreamError("host-unknown", f"this listener does not serve {domain!r}")
        self.domain = domain

    def _handshake(self, el: Element) -> None:
        if not self.domain or self.authed:
            raise StreamError("not-authorized", "open the stream to a domain first")
        secret = self.listen.hosts[self.domain] or self.listen.password or ""
        expected = hashlib.sha1((self.stream_id + secret).encode()).hexdigest()
        if not hmac.compare_digest(el.text.strip().lower().encode(), expected.encode()):
            log.info("component %s from %s: wrong secret", self.domain, self.conn.peer_ip)
            raise StreamError("not-authorized", "wrong handshake")
        if self.directory.served(self.domain):
            raise StreamError("conflict", f"{self.domain} is served already")
        self.server.router.components[self.domain] = self._deliver
        self.authed = True
        self.directory.up(self.domain, time.time(), self._lost_race)
        self.conn.write(b"<handshake/>")
        log.info("component %s connected from %s", self.domain, self.conn.peer_ip)

    def _stanza(self, el: Element) -> None:
        if not self.authed:
            raise StreamError("not-authorized", "handshake first")
        try:
            frm = JID.parse(el.attrs.get("from", ""))
            JID.parse(el.attrs.get("to", ""))
        except JIDError:
            raise StreamError("improper-addressing", "stanzas need a 'from' and a 'to'") from None
        if self.listen.check_from and frm.domain != self.domain and \
                not frm.domain.endswith("." + self.domain):
            raise StreamError("invalid-from", f"{frm.domain} is not {self.domain}")
        raw = el.raw
        if raw and raw.find(COMPONENT_NS.encode()) >= 0:
            el.raw = None  # an explicit component namespace must not reach clients
        self.server.router.route(el)

    # -- output --------------------------------------------------------------------
    def _deliver(self, ev: StanzaEvent) -> bool:
        """The router's handler for the component's domain."""
        if not self.closed:
            self.conn.write(wire(ev.stanza))
        return True

    # -- the end -------------------------------------------------------------------
    def _lost_race(self) -> None:
        """Another node took the domain first (both connected at once): from now on its
        stanzas go there, and this connection ends."""
        components = self.server.router.components
        if components.get(self.domain) == self._deliver:
            del components[self.domain]
        self.stream_error("conflict", f"{self.domain} is served already")

    def ended(self) -> None:
        if self.authed and self.server.router.components.get(self.domain) == self._deliver:
            del self.server.router.components[self.domain]
            self.directory.down(self.domain)
            log.info("component %s disconnected", self.domain)
        self.authed = False


async def start_listener(server: Server, listen: ListenConfig) -> asyncio.AbstractServer:
    streams: weakref.WeakSet[ComponentStream] = weakref.WeakSet()

    def accept() -> S2SConnection:
        conn = S2SConnection(server, listen.max_stanza_size,
                             server.shaper_bucket(listen.shaper))
        conn.framing.content_ns = COMPONENT_NS
        stream = ComponentStream(server, conn, listen)
        conn.stream = stream
        streams.add(stream)
        return conn

    def stopping(_server: Any) -> None:
        for s in list(streams):
            s.stream_error("system-shutdown", "the server is shutting down")
    server.hooks.add("server/stopping", stopping)
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        accept, host=listen.ip if listen.ip != "::" else None, port=listen.port,
        backlog=listen.backlog, reuse_address=True, reuse_port=server.reuse_port)
