"""Which nodes a client wants notifications of: XEP-0115 entity capabilities and the
``NODE+notify`` features of XEP-0163 (filtered notifications, XEP-0060 9.2).

When a local session sends available presence with a ``<c/>`` element, the server
asks the client for the disco#info of ``node#ver`` (once per ``ver``: answers whose
SHA-1 verification string matches are kept for every client that announces the same
``ver``). The nodes it wants are kept as session flags ``+notify:NODE``, so every
cluster node sees them in the session directory.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional

from ..jid import JID
from ..modules.disco import caps_ver
from ..sessions import flags_of
from ..stanza import StanzaError, make_iq
from ..xml import Element
from .ns import CAPS, DISCO_INFO, q

log = logging.getLogger(__name__)

NOTIFY = "+notify:"   # session flag prefix
KNOWN_MAX = 10_000    # verified caps kept, at most


def wants(session: Any, node: str) -> bool:
    """Does the session want notifications of ``node``? (local or on another node)"""
    return (NOTIFY + node) in flags_of(session)


def wants_any(session: Any) -> bool:
    """Does the session want notifications of some node?"""
    return any(f.startswith(NOTIFY) for f in flags_of(session))


class Caps:
    def __init__(self, server: Any, host: str) -> None:
        self.server = server
        self.host = host
        self.known: dict[str, frozenset[str]] = {}   # verified ver -> +notify nodes
        self._asking: dict[str, asyncio.Future[Optional[frozenset[str]]]] = {}

    async def notify_nodes(self, jid: JID, presence: Optional[Element]) -> Optional[frozenset[str]]:
        """The nodes the entity ``jid`` (a local session, or a contact on another server)
        wants notifications of, from the caps in its ``presence``; None when it
        announced no caps (or did not answer about them)."""
        c = presence.find(q(CAPS, "c")) if presence is not None else None
        if c is None:
            return None
        ver, node, hash_ = c.attrs.get("ver"), c.attrs.get("node"), c.attrs.get("hash")
        if not ver or not node:
            return None
        found = self.known.get(ver)
        if found is not None:
            return found
        asking = self._asking.get(ver)
        if asking is not None:
            return await asyncio.shield(asking)
        fut: asyncio.Future[Optional[frozenset[str]]] = asyncio.get_running_loop().create_future()
        self._asking[ver] = fut
        nodes: Optional[frozenset[str]] = None
        try:
            nodes = await self._ask(jid, node, ver, hash_)
        finally:
            del self._asking[ver]
            fut.set_result(nodes)   # (None if asking failed)
        return nodes

    async def _ask(self, jid: JID, node: str, ver: str,
                   hash_: Optional[str]) -> Optional[frozenset[str]]:
        iq = make_iq("get", Element(q(DISCO_INFO, "query"), {"node": f"{node}#{ver}"}),
                     to=str(jid), frm=self.host)
        try:
            reply = await self.server.iq_tracker.request(iq, timeout=10.0)
        except (StanzaError, TimeoutError) as e:
            log.debug("caps of %s: no answer (%s)", jid, e)
            return None
        query = reply.find(q(DISCO_INFO, "query"))
        if query is None:
            return None
        identities = [(i.attrs.get("category", ""), i.attrs.get("type", ""), i.attrs.get("name"))
                      for i in query.findall(q(DISCO_INFO, "identity"))]
        features = [f.attrs.get("var", "") for f in query.findall(q(DISCO_INFO, "feature"))]
        forms = query.findall("{jabber:x:data}x")
        nodes = frozenset(f[:-len("+notify")] for f in features if f.endswith("+notify"))
        if hash_ == "sha-1" and caps_ver(identities, features, forms) == ver:
            if len(self.known) >= KNOWN_MAX:
                self.known.clear()
            self.known[ver] = nodes
        return nodes
