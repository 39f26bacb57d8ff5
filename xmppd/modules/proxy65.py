"""mod_proxy65: a SOCKS5 bytestreams proxy (XEP-0065) for file transfer between
clients that cannot reach each other directly (Gajim, Psi, Pidgin; Jingle file
transfer's SOCKS5 fallback).

The proxy is a service at ``proxy.HOST`` (listed in the host's disco#items; identity
``proxy/bytestreams``). Asked for its network address (iq get ``query``), it gives
``hostname`` and ``port``; both parties connect there with SOCKS5 (:mod:`.socks5`)
and the requester activates the stream with an iq set naming the target, after
which the proxy relays the bytes. ``access`` decides who may use it (``all`` by
default, as in ejabberd; the default configuration says ``local``);
``max_connections`` bounds the streams one requester has active at once.

With ``xmppd run --workers N`` worker *i* listens on ``port + i`` and gives that
port: the two connections of a stream and its activation reach the same worker.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any, Optional

from ..acl import v_access
from ..confval import INFINITY, v_any, v_port, v_pos_int_or_infinity, v_str
from ..jid import JID, JIDError
from ..moduleapi import Module, Option, service_domain, v_hosts
from ..stanza import StanzaError, StanzaEvent, not_a_request, payload_key
from ..xml import Element
from .socks5 import Relay

log = logging.getLogger(__name__)

NS = "http://jabber.org/protocol/bytestreams"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"


def dst_addr(sid: str, requester: str, target: str) -> str:
    """XEP-0065 5.3.2: the SOCKS5 address of a stream, SHA-1 hex of SID and both JIDs."""
    return hashlib.sha1((sid + requester + target).encode()).hexdigest()


class Proxy65(Module):
    name = "mod_proxy65"
    xeps = ("XEP-0065",)
    options = {
        "host": Option("proxy.@HOST@", v_str, "the service's domain"),
        "hosts": Option([], v_hosts, "the service's domain (the first one is used)"),
        "name": Option("SOCKS5 Bytestreams", v_str, "the service's name in discovery"),
        "ip": Option("", v_str, "the address to listen on (all of them by default)"),
        "port": Option(7777, v_port, "the port to listen on"),
        "hostname": Option(None, v_str, "the address given to clients (default: ip, or the "
                                        "virtual host's name)"),
        "access": Option("all", v_access, "who may use the proxy"),
        "max_connections": Option(INFINITY, v_pos_int_or_infinity,
                                  "streams one requester may have active at once"),
        "recbuf": Option(None, v_any, "accepted, ignored"),
        "sndbuf": Option(None, v_any, "accepted, ignored"),
        "shaper": Option(None, v_any, "accepted, ignored: the proxy relays at full speed"),
        "auth_type": Option(None, v_any, "accepted, ignored"),
        "ram_db_type": Option(None, v_any, "accepted, ignored"),
        "vcard": Option(None, v_any, "accepted, ignored"),
    }

    def setup(self) -> None:
        o = self.opts
        self.domain = service_domain(self)
        # with --workers, each worker has its own port (see the module's description)
        self.port: int = o["port"] + int(os.environ.get("XMPPD_WORKER", "0") or 0)
        hostname = o["hostname"] or o["ip"] or self.host
        self.hostname = str(hostname).replace("@HOST@", self.host)
        self.relay = Relay()
        self.streams: dict[JID, int] = {}  # requester -> active streams (max_connections)
        self.api.add_component(self.domain, self._component)
        self.api.add_item(self.domain, o["name"])

    async def start_async(self) -> None:
        await self.relay.start(self.opts["ip"], self.port, reuse_port=False)
        log.info("%s: SOCKS5 proxy listening on port %d", self.domain, self.port)

    async def stop_async(self) -> None:
        await self.relay.stop()

    # -- the service's JID ------------------------------------------------------------
    def _component(self, ev: StanzaEvent) -> Any:
        if not_a_request(ev):
            return True
        key = payload_key(ev.stanza)
        if key == f"{DISCO_INFO}:query" and ev.type == "get":
            return self.server.router.answer_iq(ev, self._disco_info)
        if key == f"{DISCO_ITEMS}:query" and ev.type == "get":
            return self.server.router.answer_iq(ev, lambda ev: Element("{%s}query" % DISCO_ITEMS))
        if key == f"{NS}:query":
            return self.server.router.answer_iq(
                ev, self._address if ev.type == "get" else self._activate)
        return ev.error("service-unavailable")

    def _disco_info(self, ev: StanzaEvent) -> Element:
        if ev.stanza.first_child().attrs.get("node"):  # type: ignore[union-attr]
            raise StanzaError("item-not-found")
        q = Element("{%s}query" % DISCO_INFO)
        q.add("{%s}identity" % DISCO_INFO, {"category": "proxy", "type": "bytestreams",
                                           "name": self.opts["name"]})
        for var in (DISCO_INFO, DISCO_ITEMS, NS):
            q.add("{%s}feature" % DISCO_INFO, {"var": var})
        return q

    def _allowed(self, jid: JID) -> None:
        if not self.server.access.access_or_local(self.opts["access"], jid):
            raise StanzaError("forbidden", "auth", "you may not use this proxy")

    def _address(self, ev: StanzaEvent) -> Element:
        """5.3.1: the proxy's network address."""
        self._allowed(ev.from_jid)
        q = Element("{%s}query" % NS)
        q.add("{%s}streamhost" % NS, {"jid": self.domain, "host": self.hostname,
                                     "port": str(self.port)})
        return q

    def _activate(self, ev: StanzaEvent) -> Optional[Element]:
        """6.3.4: the requester activates the stream to ``target``."""
        self._allowed(ev.from_jid)
        query = ev.stanza.first_child()
        assert query is not None
        sid = query.attrs.get("sid")
        target = query.findtext("{%s}activate" % NS)
        if not sid or not target:
            raise StanzaError("bad-request", "modify", "a sid and an activate element")
        try:
            target_jid = JID.parse(target.strip())
        except JIDError:
            raise StanzaError("jid-malformed", "modify", "the target is not a JID") from None
        requester = ev.from_jid
        if self.streams.get(requester.bare, 0) >= self.opts["max_connections"]:
            raise StanzaError("not-allowed", "cancel", "too many active streams")
        dst = dst_addr(sid, str(requester), str(target_jid))
        task = self.relay.activate(dst)
        if task is None:
            raise StanzaError("item-not-found", "cancel",
                              "both parties must be connected before activation")
        bare = requester.bare
        self.streams[bare] = self.streams.get(bare, 0) + 1
        task.add_done_callback(lambda _task: self._stream_done(bare))
        return None

    def _stream_done(self, bare: JID) -> None:
        left = self.streams.get(bare, 1) - 1
        if left > 0:
            self.streams[bare] = left
        else:
            self.streams.pop(bare, None)
