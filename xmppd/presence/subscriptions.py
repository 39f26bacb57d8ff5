"""Presence subscriptions (RFC 6121 section 3): the stanzas, on both sides.

Outbound (``pre-presence/*``, from the user's client): the user's roster
changes by the state machine in ``subscription.py``, then the stanza, stamped
with the user's bare JID, is routed to the contact. Inbound (``presence/*``
for a local user): the owner's roster changes, the stanza is delivered to the
owner's available resources, and what must survive until the owner's next
login (a pending request, an answer while offline) is stored with the item.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..jid import JID
from ..moduleapi import ModuleAPI
from ..stanza import StanzaError, StanzaEvent
from ..xml import Element
from .rosters import Item, Roster
from .stanzas import presence
from .subscription import NONE, SUBSCRIPTION_TYPES, SubState, inbound, outbound

if TYPE_CHECKING:
    from .roster import RosterModule

log = logging.getLogger(__name__)


class Subscriptions:
    def __init__(self, mod: RosterModule) -> None:
        self.mod = mod
        self.server = mod.server
        self.cache = mod.cache

    def setup(self, api: ModuleAPI) -> None:
        for dest in ("bare", "full", "remote", "component"):
            api.hook(f"pre-presence/{dest}", self.outgoing)
        for dest in ("bare", "full"):
            api.hook(f"presence/{dest}", self.incoming)

    # -- from the user's client ----------------------------------------------------
    def outgoing(self, ev: StanzaEvent) -> Any:
        kind = ev.type
        if kind in SUBSCRIPTION_TYPES:
            user, contact = ev.from_jid.bare, ev.to_jid.bare
            if contact == user:
                return True
            out = ev.stanza.copy()
            out.attrs["from"] = str(user)
            out.attrs["to"] = str(contact)
            self.cache.run(user, lambda r: self._outbound(r, contact, kind, out, ev))
            return True
        if kind == "probe":
            self.mod.broadcast.probe(ev.from_jid, ev.to_jid.bare)
            return True
        if kind == "available" or kind == "unavailable":
            self.mod.broadcast.directed(ev)
        return None

    def _outbound(self, r: Roster, contact: JID, kind: str, out: Element,
                  ev: StanzaEvent) -> None:
        item = r.get(contact)
        if item is not None and item.shared:
            # a shared roster group's contact: subscribed both ways by the group
            if kind == "subscribe" and ev.origin is not None:
                ev.origin.send(presence("subscribed", str(contact), str(r.user)))
            return
        old = item.state if item is not None else NONE
        res = outbound(old, kind)
        # the item enters the roster the user sees: a request, a pre-approval, an approval
        creates = (kind == "subscribe" or (kind == "subscribed" and (
            res.state.approved or res.state.frm))) and (item is None or not item.visible)
        if creates and (item is None or not item.state.pending_in) and r.size() >= self.mod.limit:
            self.server.router.bounce(ev.stanza, StanzaError(
                "not-allowed", text=f"the roster is full ({int(self.mod.limit)} items)"),
                "presence", kind, ev.origin)
            return
        if item is None and (creates or res.state != old):
            item = r.items[contact] = Item(contact)
        if item is not None:
            before = item.view()
            was_visible = item.visible
            if creates:
                item.visible = True
            dirty = res.state != old or item.visible != was_visible
            item.state = res.state
            if not res.state.pending_in and item.request is not None:
                item.request = None
                dirty = True
            if dirty:
                self.mod.changed(r, item, before)
        if res.route:
            self.server.router.route(out)
        self._effects(r, contact, old, res.state)

    def cancel(self, r: Roster, item: Item, kinds: list[str]) -> None:
        """The user removed ``item``: end the subscriptions both ways (RFC 6121 2.5.2)."""
        for kind in kinds:
            self.server.router.route(presence(kind, str(r.user), str(item.jid)))
        if item.state.frm and not item.shared:
            self.mod.broadcast.send_unavailable(r.user, item.jid)

    # -- for a local user ---------------------------------------------------------------
    def incoming(self, ev: StanzaEvent) -> Any:
        kind = ev.type
        if kind in SUBSCRIPTION_TYPES:
            owner, contact = ev.to_jid.bare, ev.from_jid.bare
            if owner == contact:
                return True
            stanza = ev.stanza
            if stanza.attrs.get("from") != str(contact) or stanza.attrs.get("to") != str(owner):
                stanza = stanza.copy()
                stanza.attrs["from"] = str(contact)
                stanza.attrs["to"] = str(owner)
            if self.server.forward_to_sessions(owner, stanza):
                return True   # the node where the owner is logged in changes the roster
            self.cache.run(owner, lambda r: self._inbound(r, contact, kind, stanza))
            return True
        if kind == "probe":
            self.mod.broadcast.probe(ev.from_jid, ev.to_jid.bare)
            return True
        return None

    def _inbound(self, r: Roster, contact: JID, kind: str, stanza: Element) -> None:
        item = r.get(contact)
        if item is not None and item.shared:
            # a shared roster group's contact: subscribed both ways by the group
            if kind == "subscribe":
                self.server.router.route(presence("subscribed", str(r.user), str(contact)))
            return
        old = item.state if item is not None else NONE
        res = inbound(old, kind)
        if res.reply is not None:
            self.server.router.route(presence(res.reply, str(r.user), str(contact)))
        if res.state == old and not res.deliver:
            return
        if item is None:
            if r.size() >= self.mod.limit:
                log.info("roster of %s is full: dropping %s from %s", r.user, kind, contact)
                return
            item = r.items[contact] = Item(contact)
        available = [s for s in self.server.sessions.resources(r.user) if s.available]
        before = item.view()
        item.state = res.state
        if kind == "subscribe":
            if res.deliver:
                item.request = str(stanza)
        else:
            if not res.state.pending_in:
                item.request = None
            if res.deliver:   # kept for the next login only if nobody can see it now
                item.answer = None if available else str(stanza)
        if res.state.frm:
            item.request = None
        self.mod.changed(r, item, before)
        if res.deliver:
            for s in available:
                s.send(stanza)
        self._effects(r, contact, old, res.state)

    # -- presence that follows a change -------------------------------------------------
    def _effects(self, r: Roster, contact: JID, old: SubState, new: SubState) -> None:
        if old.frm and not new.frm:
            self.mod.broadcast.send_unavailable(r.user, contact)
        elif new.frm and not old.frm:
            self.mod.broadcast.send_current(r.user, contact)
