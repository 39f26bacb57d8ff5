"""mod_private: private XML storage (XEP-0049 jabber:iq:private).

A user keeps any XML on their account, by namespace (bookmarks in
``storage:bookmarks``, client preferences): an iq set stores the children of the
query, each namespace's replacing what that namespace held; an iq get with one
empty child answers what its namespace holds (or the empty child). Only the user
reaches their own storage (``forbidden`` to others); a query without a child is
``bad-request`` (XEP-0086's "Bad Format"; ``not-acceptable`` on a set), and the
reserved namespaces (``jabber:*``, ``http://jabber.org/*``, ``vcard-temp``) are
``not-acceptable``.
"""

from __future__ import annotations

from ..moduleapi import iq_handler
from ..stanza import StanzaError, StanzaEvent
from ..xml import Child, Element
from ..xmlstream import parse_xml
from .xml_store import XmlStoreModule, private_storage

NS = "jabber:iq:private"
QUERY = "{%s}query" % NS
RESERVED = ("jabber:", "http://jabber.org/", "vcard-temp")


def _children(ev: StanzaEvent) -> list[Element]:
    query = ev.stanza.find(QUERY)
    assert query is not None  # (the handler's key)
    children = list(query.elements())
    if not children:
        raise StanzaError("not-acceptable" if ev.type == "set" else "bad-request",
                          text="name the namespace: one child element")
    for c in children:
        if not c.ns or c.ns.startswith(RESERVED):
            raise StanzaError("not-acceptable", text="a reserved namespace: %s" % c.ns)
    return children


class PrivateModule(XmlStoreModule):
    name = "mod_private"
    features = (NS,)
    xeps = ("XEP-0049",)
    table = private_storage

    @iq_handler("get", NS, "query", dest="self")
    async def get(self, ev: StanzaEvent) -> Element:
        children = _children(ev)
        if len(children) > 1:
            raise StanzaError("not-acceptable", text="one namespace per get")
        asked = children[0]
        data = await self.store.get(self.host, ev.from_jid.local or "", asked.ns)
        kept = parse_xml(data) if data is not None else None   # a query with them
        found: list[Child] = list(kept.elements()) if kept is not None else []
        return Element(QUERY, None, found or [Element(asked.tag)])

    @iq_handler("set", NS, "query", dest="self")
    async def set(self, ev: StanzaEvent) -> None:
        by_ns: dict[str, list[Child]] = {}
        for c in _children(ev):
            by_ns.setdefault(c.ns, []).append(c)
        await self.store.put(self.host, ev.from_jid.local or "", [
            (ns, Element(QUERY, None, els).to_bytes().decode())
            for ns, els in by_ns.items()])

    @iq_handler("get", NS, "query", dest="bare")
    @iq_handler("set", NS, "query", dest="bare")
    def other(self, ev: StanzaEvent) -> None:
        raise StanzaError("forbidden", text="private XML is its owner's only")
