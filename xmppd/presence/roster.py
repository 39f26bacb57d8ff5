"""mod_roster: the roster (RFC 6121 section 2), subscriptions and presence broadcast.

The roster IQ protocol lives here: get (with roster versioning, RFC 6121
2.6), set, remove, pushes to every interested resource, groups and names, and
a limit on the roster size. Subscription handling (``subscriptions.py``) and
presence broadcast (``broadcast.py``) work on the same in-memory rosters
(``rosters.py``) and are part of this module, as in ejabberd.
"""

from __future__ import annotations

import itertools
from typing import Any, Optional, Union

from ..confval import v_bool, v_pos_int_or_infinity
from ..jid import JID, JIDError
from ..moduleapi import Module, Option, hook, iq_handler
from ..sessions import flags_of
from ..stanza import StanzaError, StanzaEvent, iq_result, make_iq
from ..xml import Element
from . import roster_commands
from .broadcast import Broadcast
from .roster_store import RosterStore
from .rosters import GROUP, ITEM, NS, Item, Roster, RosterCache
from .stanzas import presence
from .subscription import NONE
from .subscriptions import Subscriptions

QUERY = "{%s}query" % NS
INTERESTED = "roster"   # session flag: the client asked for the roster, so it gets pushes
VER_FEATURE = "{urn:xmpp:features:rosterver}ver"
PREAPPROVAL_FEATURE = "{urn:xmpp:features:pre-approval}sub"
MAX_TEXT = 1023   # bytes allowed in a name or a group name


class RosterModule(Module):
    name = "mod_roster"
    xeps = ("RFC 6121",)
    stores = ("xmppd.presence.roster_store",)
    options = {
        "versioning": Option(False, v_bool, "roster versioning (RFC 6121 2.6)"),
        "max_roster_size": Option(1000, v_pos_int_or_infinity,
                                  "most items a roster may hold (pending requests included)"),
    }

    def setup(self) -> None:
        assert self.server.db is not None
        self.cache = RosterCache(RosterStore(self.server.db), self.host,
                                 lambda user: self.server.cluster_event("roster", str(user)))
        self.api.hook("cluster/event/roster", self._changed_elsewhere)
        self.broadcast = Broadcast(self)
        self.subscriptions = Subscriptions(self)
        self._ids = itertools.count(1)
        if self.opts["versioning"]:
            ver = Element(VER_FEATURE).to_bytes("")
            self.api.add_stream_feature("post-auth", lambda s: ver)
        sub = Element(PREAPPROVAL_FEATURE).to_bytes("")
        self.api.add_stream_feature("post-auth", lambda s: sub)
        self.broadcast.setup(self.api)
        self.subscriptions.setup(self.api)
        roster_commands.install(self)

    def _changed_elsewhere(self, user: str) -> None:
        """Another cluster node stored a change to this user's roster."""
        try:
            jid = JID.parse(user)
        except JIDError:
            return
        if jid.domain == self.host:
            self.cache.invalidate(jid)

    async def stop_async(self) -> None:
        await self.cache.drain()

    @hook("account/removed")
    async def _account_removed(self, user: JID) -> None:
        """The account is deleted: its contacts learn that the subscriptions ended
        (as when each item is removed, RFC 6121 2.5.2), then the roster goes."""
        if user.domain != self.host or user.local is None:
            return
        user = user.bare

        def end_all(r: Roster) -> None:
            for item in list(r.items.values()):
                st = item.state
                if st.to or st.ask:
                    self.server.router.route(presence("unsubscribe", str(user), str(item.jid)))
                if st.frm or st.pending_in:
                    self.server.router.route(presence("unsubscribed", str(user), str(item.jid)))
            r.items.clear()
        await self.cache.run(user, end_all)
        await self.cache.drain()
        await self.cache.store.delete_user(self.host, user.local or "")
        self.server.cluster_event("roster", str(user))

    def stop(self) -> None:
        self.cache.flush_sync()

    @property
    def limit(self) -> float:
        return float(self.opts["max_roster_size"])

    # -- sessions ----------------------------------------------------------------
    @hook("c2s/bound")
    def _bound(self, session: Any) -> None:
        if session.jid.domain == self.host:
            self.cache.acquire(session.jid.bare)

    @hook("c2s/ended")
    def _ended(self, session: Any, reason: str) -> None:
        if session.jid.domain != self.host:
            return
        self.broadcast.session_ended(session)
        self.cache.release(session.jid.bare)

    # -- pushes ----------------------------------------------------------------------
    def push(self, roster: Roster, item: Item, local_only: bool = False) -> None:
        """Roster push (RFC 6121 2.1.6) to every interested resource of the owner (of
        this node only: ``local_only``, when every node changes its own copy)."""
        payload = item.element() if item.shown else item.removed_element()
        sessions = self.server.sessions
        for s in (sessions.local_resources(roster.user) if local_only
                  else sessions.resources(roster.user)):
            if INTERESTED not in flags_of(s):
                continue  # (resources on other cluster nodes too)
            q = Element(QUERY, {}, [payload])
            if self.opts["versioning"]:
                q.attrs["ver"] = _ver(roster, roster.version)
            s.send(make_iq("set", q, to=str(s.jid), id=f"push{next(self._ids)}"))

    def changed(self, roster: Roster, item: Item, before: Optional[tuple[Any, ...]]) -> None:
        """Store a changed item; if what the user sees of it changed (``before`` is the
        item's earlier :meth:`~Item.view`), give it a new version and push it."""
        seen = item.view() != before
        self.cache.save(roster, item, bump=seen)
        if seen:
            self.push(roster, item)

    # -- roster get (RFC 6121 2.2, 2.6) ------------------------------------------------
    @iq_handler("get", NS, "query", dest="self")
    def get(self, ev: StanzaEvent) -> Any:
        session = ev.origin
        if session is not None and hasattr(session, "data"):
            self.server.sessions.set_flag(session, INTERESTED)
        query = ev.stanza.first_child()
        assert query is not None
        ver = query.attrs.get("ver") if self.opts["versioning"] else None
        return self.cache.run(ev.from_jid.bare, lambda r: self._get(ev, r, ver))

    def _get(self, ev: StanzaEvent, roster: Roster, ver: Optional[str]) -> Union[Element, bool]:
        known = _parse_ver(ver, roster)
        if known is not None and known <= roster.version:
            # the client is current, or gets the changes as pushes after an empty result
            changed = sorted((it for it in roster.items.values() if it.ver > known),
                             key=lambda it: it.ver)
            self._reply(ev, iq_result(ev.stanza))
            session = ev.origin
            for it in changed:
                payload = it.element() if it.shown else it.removed_element()
                session.send(make_iq("set", Element(QUERY, {"ver": _ver(roster, it.ver)},
                                                    [payload]),
                                     to=session.jid_str, id=f"push{next(self._ids)}"))
            return True
        q = Element(QUERY, {"ver": _ver(roster, roster.version)} if ver is not None else {})
        for it in roster.visible():
            q.append(it.element())
        return q

    def _reply(self, ev: StanzaEvent, reply: Element) -> None:
        if ev.stanza.attrs.get("to") is None and ev.origin is not None:
            reply.attrs.pop("from", None)
            ev.origin.send(reply)
        else:
            self.server.router.route(reply)

    # -- roster set (RFC 6121 2.3 - 2.5) ---------------------------------------------
    @iq_handler("set", NS, "query", dest="self")
    def set(self, ev: StanzaEvent) -> Any:
        query = ev.stanza.first_child()
        assert query is not None
        items = query.findall(ITEM)
        if len(items) != 1:
            raise StanzaError("bad-request", text="a roster set holds exactly one item")
        el = items[0]
        try:
            contact = JID.parse(el.attrs.get("jid", ""))
        except JIDError:
            raise StanzaError("bad-request", text="invalid jid") from None
        if contact.resource is not None:
            raise StanzaError("bad-request", text="roster items are bare JIDs")
        user = ev.from_jid.bare
        if el.attrs.get("subscription") == "remove":
            return self.cache.run(user, lambda r: self._remove(r, contact))
        name = el.attrs.get("name") or None
        if name is not None and len(name.encode()) > MAX_TEXT:
            raise StanzaError("not-acceptable", text=f"name longer than {MAX_TEXT} bytes")
        groups: list[str] = []
        for g in el.findall(GROUP):
            text = g.text
            if not text:
                raise StanzaError("not-acceptable", text="empty group name")
            if len(text.encode()) > MAX_TEXT:
                raise StanzaError("not-acceptable", text=f"group longer than {MAX_TEXT} bytes")
            if text in groups:
                raise StanzaError("bad-request", text=f"group {text!r} given twice")
            groups.append(text)
        return self.cache.run(user, lambda r: self._update(r, contact, name, tuple(groups)))

    def item_for(self, roster: Roster, contact: JID) -> Item:
        """``contact``'s item, made if needed; ``not-allowed`` when that would take
        the roster past its limit."""
        item = roster.get(contact)
        if item is None or not (item.visible or item.state.pending_in):
            if roster.size() >= self.limit:
                raise StanzaError("not-allowed",
                                  text=f"the roster is full ({int(self.limit)} items)")
        if item is None:
            item = roster.items[contact] = Item(contact)
        return item

    def _update(self, roster: Roster, contact: JID, name: Optional[str],
                groups: tuple[str, ...]) -> None:
        item = self.item_for(roster, contact)
        before = item.view()
        if item.visible and item.name == name and item.groups == groups:
            return
        item.name, item.groups, item.visible = name, groups, True
        self.changed(roster, item, before)

    def _remove(self, roster: Roster, contact: JID) -> None:
        item = roster.get(contact)
        if item is None or not item.shown:
            raise StanzaError("item-not-found")
        if not item.visible:
            raise StanzaError("not-allowed", text="a contact of a shared roster group "
                                                  "stays in the roster")
        st = item.state
        kinds = []
        if st.to or st.ask:
            kinds.append("unsubscribe")
        if st.frm or st.pending_in:
            kinds.append("unsubscribed")
        self.subscriptions.cancel(roster, item, kinds)
        before = item.view()
        self.clear(roster, item)
        if item.shared and item.view() == before:
            self.push(roster, item)  # still there (the group's): the client is told so

    def clear(self, roster: Roster, item: Item) -> None:
        """Take ``item`` out of the roster (stored, and pushed as removed)."""
        before = item.view()
        item.state, item.visible, item.name, item.groups = NONE, False, None, ()
        item.request = item.answer = None
        self.changed(roster, item, before)


def _ver(roster: Roster, n: int) -> str:
    """A roster version as clients see it: the counter, and the tag of the user's shared
    roster contacts when there are any (mod_shared_roster: they change without the
    counter moving, so a changed tag means that the client's copy is stale)."""
    return f"{n}.{roster.shared_tag}" if roster.shared_tag else str(n)


def _parse_ver(ver: Optional[str], roster: Roster) -> Optional[int]:
    """The counter of a version the client sent, if it is one of this roster's (its
    shared contacts unchanged since)."""
    if not ver:
        return None
    num, _, tag = ver.partition(".")
    if tag != roster.shared_tag:
        return None
    try:
        n = int(num)
    except ValueError:
        return None
    return n if n >= 0 else None
