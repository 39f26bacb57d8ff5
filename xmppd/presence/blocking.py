"""mod_blocking: XEP-0191 blocking command.

Block lists are small and all kept in memory (loaded at start), so the
checks on the routing path never wait on the database:

- ``inbound/*``: a stanza from a JID the recipient blocked is not delivered
  (presence dropped, message and iq get/set refused with
  ``service-unavailable``, results dropped); presence the server sends on
  behalf of a user (broadcast, probe answers) does not reach a JID that user
  blocked.
- ``pre-*``: a user's own stanza to a JID they blocked is refused with
  ``not-acceptable`` and ``<blocked xmlns='urn:xmpp:blocking:errors'/>``
  (presence is dropped).

Blocking a contact sends it unavailable presence (if it could see the user);
unblocking sends the current presence and asks for the contact's. Changes are
pushed to every connected resource of the user.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Optional

from ..jid import JID, JIDError
from ..moduleapi import Module, hook, iq_handler
from ..stanza import StanzaError, StanzaEvent, make_iq
from ..xml import Element
from .blocking_store import BlockingStore
from .roster import RosterModule
from .rosters import Roster
from .stanzas import presence

NS = "urn:xmpp:blocking"
ERRORS_NS = "urn:xmpp:blocking:errors"
ITEM = "{%s}item" % NS
DESTS = ("bare", "full", "remote", "component")


def match_keys(jid: JID) -> tuple[str, ...]:
    """The block list entries that match a stanza from ``jid`` (XEP-0191 section 6)."""
    if jid.resource is None:
        return (str(jid), jid.domain) if jid.local is not None else (jid.domain,)
    keys = [str(jid), f"{jid.domain}/{jid.resource}", jid.domain]
    if jid.local is not None:
        keys.insert(1, str(jid.bare))
    return tuple(keys)


class BlockingModule(Module):
    name = "mod_blocking"
    features = (NS,)
    xeps = ("XEP-0191",)
    depends = (RosterModule,)
    stores = ("xmppd.presence.blocking_store",)

    def setup(self) -> None:
        assert self.server.db is not None
        self.store = BlockingStore(self.server.db)
        self.lists: dict[JID, set[str]] = {}
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        for dest in ("bare", "full"):
            self.api.hook(f"inbound/{dest}", self._inbound, 100)
            self.api.hook(f"inbound/{dest}", self._from_blocker, 100, host_only=False)
        for kind in ("message", "presence", "iq"):
            for dest in DESTS:
                self.api.hook(f"pre-{kind}/{dest}", self._outbound, 100)

    async def start_async(self) -> None:
        for user, jids in (await self.store.load_all(self.host)).items():
            self.lists[JID(user, self.host, None, prepped=True)] = jids

    # -- checks -----------------------------------------------------------------------
    def blocks(self, user: JID, other: JID) -> bool:
        lst = self.lists.get(user)
        if not lst:
            return False
        return any(k in lst for k in match_keys(other))

    @hook("privacy/blocked")
    def _privacy(self, user: JID, other: JID) -> Optional[bool]:
        return True if user.domain == self.host and self.blocks(user, other) else None

    def _inbound(self, ev: StanzaEvent) -> Optional[bool]:
        """The recipient blocked the sender."""
        if not self.lists or not self.blocks(ev.to_jid.bare, ev.from_jid):
            return None
        kind, type_ = ev.kind, ev.type
        if kind == "message" and type_ not in ("error", "groupchat", "headline"):
            ev.error("service-unavailable")
        elif kind == "iq" and type_ in ("get", "set"):
            ev.error("service-unavailable")
        return True

    def _from_blocker(self, ev: StanzaEvent) -> Optional[bool]:
        """Presence a user's server sends for them never reaches a JID they blocked."""
        if ev.kind != "presence" or ev.from_jid.domain != self.host or not self.lists:
            return None
        return True if self.blocks(ev.from_jid.bare, ev.to_jid) else None

    def _outbound(self, ev: StanzaEvent) -> Optional[bool]:
        """The user sends to a JID they blocked."""
        if not self.lists or not self.blocks(ev.from_jid.bare, ev.to_jid):
            return None
        if ev.kind == "presence" or (ev.kind == "iq" and ev.type in ("result", "error")):
            return True
        self.server.router.bounce(ev.stanza, StanzaError(
            "not-acceptable", app=Element("{%s}blocked" % ERRORS_NS),
            text="you blocked this contact"), ev.kind, ev.type, ev.origin)
        return True

    # -- the protocol ---------------------------------------------------------------------
    @iq_handler("get", NS, "blocklist", dest="self")
    def get(self, ev: StanzaEvent) -> Element:
        out = Element("{%s}blocklist" % NS)
        for j in sorted(self.lists.get(ev.from_jid.bare, ())):
            out.add(ITEM, {"jid": j})
        return out

    @staticmethod
    def _jids(ev: StanzaEvent) -> list[str]:
        payload = ev.stanza.first_child()
        assert payload is not None
        out = []
        for item in payload.findall(ITEM):
            try:
                j = JID.parse(item.attrs.get("jid", ""))
            except JIDError:
                raise StanzaError("jid-malformed", "modify") from None
            if str(j) not in out:
                out.append(str(j))
        return out

    @iq_handler("set", NS, "block", dest="self")
    async def block(self, ev: StanzaEvent) -> None:
        jids = self._jids(ev)
        if not jids:
            raise StanzaError("bad-request", text="block at least one JID")
        user = ev.from_jid.bare
        current = self.lists.setdefault(user, set())
        new = [j for j in jids if j not in current]
        for j in new:
            self._going_dark(user, JID.parse(j))
        current.update(new)
        async with self._lock:
            await self.store.add(self.host, user.local or "", new)
        self.server.cluster_event("blocking", str(user))
        self._push(user, "block", jids)

    @iq_handler("set", NS, "unblock", dest="self")
    async def unblock(self, ev: StanzaEvent) -> None:
        jids = self._jids(ev)
        user = ev.from_jid.bare
        current = self.lists.get(user, set())
        gone = [j for j in jids if j in current] if jids else sorted(current)
        current.difference_update(gone)
        if not current:
            self.lists.pop(user, None)
        for j in gone:
            self._back_in_sight(user, JID.parse(j))
        async with self._lock:
            if jids:
                await self.store.remove(self.host, user.local or "", gone)
            else:
                await self.store.clear(self.host, user.local or "")
        self.server.cluster_event("blocking", str(user))
        self._push(user, "unblock", jids)

    @hook("cluster/event/blocking")
    async def _changed_elsewhere(self, user: str) -> None:
        """Another cluster node changed this user's block list: load it again."""
        try:
            jid = JID.parse(user)
        except JIDError:
            return
        if jid.domain != self.host or jid.local is None:
            return
        jids = await self.store.load_user(self.host, jid.local)
        if jids:
            self.lists[jid] = jids
        else:
            self.lists.pop(jid, None)

    @hook("account/removed")
    async def _account_removed(self, user: JID) -> None:
        if user.domain != self.host or user.local is None:
            return
        self.lists.pop(user.bare, None)
        async with self._lock:
            await self.store.clear(self.host, user.local)
        self.server.cluster_event("blocking", str(user.bare))

    def _push(self, user: JID, what: str, jids: list[str]) -> None:
        for s in self.server.sessions.resources(user):
            payload = Element("{%s}%s" % (NS, what), {}, [Element(ITEM, {"jid": j}) for j in jids])
            s.send(make_iq("set", payload, to=str(s.jid), id=f"block{next(self._ids)}"))

    # -- presence around blocking -------------------------------------------------------
    def _roster(self) -> Optional[RosterModule]:
        return RosterModule.of(self.server, self.host)

    def _going_dark(self, user: JID, blocked: JID) -> None:
        """Before the block takes effect: each side sees the other go offline."""
        mod = self._roster()
        roster = mod.cache.peek(user) if mod is not None else None
        if mod is None or roster is None or blocked.local is None:
            return
        st = roster.state(blocked.bare)
        if st.frm:
            mod.broadcast.send_unavailable(user, blocked)
        if st.to:
            for s in self.server.sessions.resources(blocked.bare):
                if s.available and (blocked.resource is None or s.jid == blocked):
                    self.server.router.route(presence("unavailable", str(s.jid), str(user)))

    def _back_in_sight(self, user: JID, unblocked: JID) -> None:
        mod = self._roster()
        if mod is None or unblocked.local is None:
            return

        def go(roster: Roster) -> None:
            assert mod is not None
            st = roster.state(unblocked.bare)
            if st.frm:
                mod.broadcast.send_current(user, unblocked)
            if st.to:
                for s in self.server.sessions.local_resources(user):
                    if s.available:
                        mod.broadcast.probe(s.jid, unblocked.bare)
        mod.cache.run(user, go)

    def __repr__(self) -> str:
        return f"<mod_blocking {self.host}: {len(self.lists)} lists>"
