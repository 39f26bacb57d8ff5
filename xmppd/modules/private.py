"""mod_private: private XML storage (XEP-0049 jabber:iq:private).

A user keeps any XML on their account, by namespace (bookmarks in
``storage:bookmarks``, client preferences): an iq set stores the children of the
query, each namespace's replacing what that namespace held; an iq get with one
empty child answers what its namespace holds (or the empty child). Only the user
reaches their own storage (``forbidden`` to others); a query without a child is
``bad-request`` (XEP-0086's "Bad Format"; ``not-acceptable`` on a set), and the
reserved namespaces (``jabber:*``, ``http://jabber.org/*``, ``vcard-temp``) are
``not-acceptable``.

With mod_pubsub on the host, bookmarks (``storage:bookmarks``) and PEP native
bookmarks (XEP-0402) are kept the same (:mod:`.bookmarks`), and the account shows
``urn:xmpp:bookmarks:1#compat``.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from ..jid import JID
from ..moduleapi import hook, iq_handler
from ..stanza import StanzaError, StanzaEvent
from ..xml import Child, Element
from ..xmlstream import parse_xml
from . import bookmarks
from .xml_store import XmlStoreModule, private_storage

log = logging.getLogger(__name__)

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
        storage = next((c for c in by_ns.get(bookmarks.STORAGE, ())
                        if isinstance(c, Element) and c.name == "storage"), None)
        pep = self._pep()
        if storage is not None and pep is not None:
            await self._to_pep(pep, ev.from_jid.bare, storage)

    # -- bookmarks: private XML and PEP (XEP-0402 #compat) ---------------------------
    def _pep(self) -> Any:
        from ..pep.module import PubsubModule
        return PubsubModule.of(self.server, self.host)

    @hook("disco-account-features")
    def _features(self, ev: StanzaEvent) -> Optional[list[str]]:
        if ev.to_jid.domain == self.host and self._pep() is not None:
            return [bookmarks.COMPAT]
        return None

    async def _to_pep(self, pep: Any, owner: JID, storage: Element) -> None:
        """A client stored its bookmarks: new and changed rooms are published, rooms
        no longer there retracted."""
        wanted = bookmarks.items_of_storage(storage)
        have = await pep.items_of(owner, bookmarks.NS2)
        options = None if await pep.has_node(owner, bookmarks.NS2) else \
            {**bookmarks.NODE_OPTIONS, "max_items": pep.cap}
        try:
            for room, item in wanted.items():
                if room not in have or not bookmarks.same(have[room], item):
                    await pep.publish(owner, bookmarks.NS2, room, item, options, by=self.name)
                    options = None
            for room in have:
                if room not in wanted:
                    await pep.retract(owner, bookmarks.NS2, room, True, by=self.name)
        except StanzaError as e:
            log.info("bookmarks of %s not converted to PEP: %s", owner, e)

    @hook("pep/published")
    async def _published(self, owner: JID, node: str, item_id: str, payload: Element,
                         by: str) -> None:
        await self._from_pep(owner, node, by)

    @hook("pep/retracted")
    async def _retracted(self, owner: JID, node: str, item_id: str, by: str) -> None:
        await self._from_pep(owner, node, by)

    async def _from_pep(self, owner: JID, node: str, by: str) -> None:
        """A client changed its PEP bookmarks: the private storage follows."""
        if node != bookmarks.NS2 or by == self.name or owner.domain != self.host:
            return
        pep = self._pep()
        if pep is None:
            return
        user = owner.local or ""
        data = await self.store.get(self.host, user, bookmarks.STORAGE)
        kept = parse_xml(data) if data is not None else None
        old = kept.find("{%s}storage" % bookmarks.STORAGE) if kept is not None else None
        storage = bookmarks.storage_of(await pep.items_of(owner, bookmarks.NS2), old)
        await self.store.put(self.host, user, [
            (bookmarks.STORAGE, Element(QUERY, None, [storage]).to_bytes().decode())])

    @iq_handler("get", NS, "query", dest="bare")
    @iq_handler("set", NS, "query", dest="bare")
    def other(self, ev: StanzaEvent) -> None:
        raise StanzaError("forbidden", text="private XML is its owner's only")
