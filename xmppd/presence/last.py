"""mod_last: last seen. XEP-0012 last activity and XEP-0319 idle in presence.

The server keeps, per user, the time of the last *user* activity: sending a
message (with a body, a chat marker or a 'composing' chat state), a presence
change or a subscription stanza. What clients do by themselves (pings, stream
management acks, roster and disco queries, keepalives, CSI changes,
receipts) does not count. Times are kept in memory and written in batches
(every ``flush_interval`` and at shutdown), never once per stanza.

XEP-0012: a query to a user's bare JID answers the seconds since that
activity (0 while an online user was active within ``online_threshold``),
plus the status text of the last logout; only the user and contacts with a
subscription ``from``/``both`` may ask (others get ``forbidden``). A query to
the server answers its uptime.

XEP-0319: when a client goes inactive (XEP-0352) or offline, the presence its
contacts receive carries ``<idle since=.../>`` with the last activity time;
contacts that come online later learn it from the server's answer to their
probe.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

from ..commands import CommandError
from ..confval import v_bool, v_timeout
from ..datetimes import stamp
from ..jid import JID, JIDError
from ..moduleapi import Module, Option, hook, iq_handler
from ..stanza import StanzaError, StanzaEvent
from ..xml import Element
from .last_store import LastStore
from .roster import RosterModule
from .stanzas import IDLE, STATUS, freeze, idle, presence

log = logging.getLogger(__name__)

NS = "jabber:iq:last"
QUERY = "{%s}query" % NS
BODY = "{jabber:client}body"
MARKERS = "urn:xmpp:chat-markers:0"
COMPOSING = "{http://jabber.org/protocol/chatstates}composing"
INACTIVE = "last:inactive"   # session.data: the client said it is inactive (CSI)


def counts_as_activity(el: Element) -> bool:
    """Is this message something the user did (not the client by itself)?"""
    if el.attrs.get("type") == "error":
        return False
    for c in el.elements():
        tag = c.tag
        if tag == BODY or tag == COMPOSING:
            return True
        if tag.startswith("{" + MARKERS) and not tag.endswith("}received"):
            return True
    return False


class LastModule(Module):
    name = "mod_last"
    features = (NS,)
    xeps = ("XEP-0012", "XEP-0319")
    depends = (RosterModule,)
    stores = ("xmppd.presence.last_store",)
    options = {
        "online_threshold": Option(60.0, v_timeout("second"),
                                   "an online user active within this many seconds reads 0"),
        "flush_interval": Option(10.0, v_timeout("second"),
                                 "how often activity times are written to the database"),
        "idle_on_inactive": Option(True, v_bool,
                                   "tell contacts (XEP-0319 idle) when a client goes inactive"),
    }

    def setup(self) -> None:
        assert self.server.db is not None
        self.store = LastStore(self.server.db)
        self._seen: dict[JID, float] = {}
        self._status: dict[JID, str] = {}
        self._dirty: set[JID] = set()
        self.api.add_timer(max(0.05, self.opts["flush_interval"]), self.flush)
        for dest in ("bare", "full", "remote", "component", "host"):
            self.api.hook(f"pre-message/{dest}", self._message)
        for dest in ("bare", "full", "remote", "component"):
            self.api.hook(f"pre-presence/{dest}", self._subscription)
        self.api.add_command("get_last", self._cmd_get_last,
                             "get_last USER HOST: last activity (UTC) and logout status, "
                             "ONLINE while connected")

    async def stop_async(self) -> None:
        await self.flush()

    def stop(self) -> None:
        rows = self._take_dirty()
        if rows:
            try:
                self.server.db.run_sync(  # type: ignore[union-attr]
                    lambda conn: LastStore.put_many_sync(conn, self.host, rows))
            except Exception:
                log.exception("storing last activity failed")

    @hook("account/removed")
    async def _account_removed(self, user: JID) -> None:
        if user.domain != self.host or user.local is None:
            return
        user = user.bare
        self._seen.pop(user, None)
        self._status.pop(user, None)
        self._dirty.discard(user)
        await self.store.delete(self.host, user.local or "")

    # -- activity -----------------------------------------------------------------
    def touch(self, user: JID, when: Optional[float] = None) -> None:
        self._seen[user] = time.time() if when is None else when
        self._dirty.add(user)

    def _message(self, ev: StanzaEvent) -> None:
        if counts_as_activity(ev.stanza) and not (self.server.overload and self._shed()):
            self.touch(ev.from_jid.bare)

    def _shed(self) -> bool:
        """Under overload (xmppd/overload.py) activity is not written down; logouts are."""
        return self.server.load.shed("last-seen")

    def _subscription(self, ev: StanzaEvent) -> None:
        if ev.type in ("subscribe", "subscribed", "unsubscribe", "unsubscribed"):
            self.touch(ev.from_jid.bare)

    @hook("pre-presence/self")
    def _presence(self, ev: StanzaEvent) -> None:
        user = ev.from_jid.bare
        if ev.type == "available":
            # a client announcing idleness is not activity
            if ev.stanza.find(IDLE) is None and not (self.server.overload and self._shed()):
                self.touch(user)
        elif ev.type == "unavailable":
            self.touch(user)
            self._status[user] = ev.stanza.findtext(STATUS) or ""

    @hook("c2s/ended", priority=10)
    def _ended(self, session: Any, reason: str) -> None:
        user = session.jid.bare
        if user.domain != self.host:
            return
        if session.available:
            self._status[user] = ""   # gone without saying goodbye
        if user in self._seen:
            self._dirty.add(user)

    # -- batched storage ---------------------------------------------------------
    def _take_dirty(self) -> list[tuple[str, int, str]]:
        rows = []
        for u in self._dirty:
            seen = self._seen.get(u)
            if seen is not None and u.local is not None:
                rows.append((u.local, int(seen), self._status.get(u, "")))
        self._dirty = set()
        return rows

    async def flush(self) -> None:
        dirty = set(self._dirty)
        rows = self._take_dirty()
        if not rows:
            return
        await self.server.db.run(  # type: ignore[union-attr]
            lambda conn: LastStore.put_many_sync(conn, self.host, rows))
        # written: forget users who are offline (the store answers for them)
        for u in dirty:
            if u not in self._dirty and not self.server.sessions.resources(u):
                self._seen.pop(u, None)
                self._status.pop(u, None)

    async def lookup(self, users: list[JID]) -> dict[JID, tuple[float, str]]:
        """Last activity and logout status, from memory or the store."""
        out: dict[JID, tuple[float, str]] = {}
        missing = []
        for u in users:
            seen = self._seen.get(u)
            if seen is not None:
                out[u] = (seen, self._status.get(u, ""))
            elif u.local is not None:
                missing.append(u)
        if missing:
            stored = await self.store.get_many(self.host, [u.local or "" for u in missing])
            for u in missing:
                row = stored.get(u.local or "")
                if row is not None and u not in self._seen:
                    out[u] = (float(row[0]), row[1])
        return out

    async def _cmd_get_last(self, user: str, host: str) -> str:
        """ejabberdctl get_last: the answer of the host's own mod_last."""
        mod = LastModule.of(self.server, host.lower())
        if mod is None:
            raise CommandError(f"no {self.name} on host {host!r}")
        try:
            bare = JID(user, mod.host)
        except JIDError as e:
            raise CommandError(str(e)) from None
        if self.server.sessions.resources(bare):
            return "%s\tONLINE" % stamp(time.time(), millis=False)
        found = (await mod.lookup([bare])).get(bare)
        if found is None:
            return "never\tNOT FOUND"
        return "%s\t%s" % (stamp(found[0], millis=False), found[1])

    # -- XEP-0319 idle -------------------------------------------------------------
    @hook("presence/decorate")
    def _decorate(self, session: Any, out: Element) -> None:
        user = session.jid.bare
        if user.domain != self.host or out.find(IDLE) is not None:
            return
        if out.attrs.get("type") == "unavailable" or session.data.get(INACTIVE):
            seen = self._seen.get(user)
            if seen is not None:
                out.append(idle(seen))

    @hook("csi/inactive")
    def _inactive(self, session: Any) -> None:
        if session.jid.domain == self.host and self.opts["idle_on_inactive"]:
            session.data[INACTIVE] = True
            self.server.hooks.fire_all("presence/rebroadcast", session)

    @hook("csi/active")
    def _active(self, session: Any) -> None:
        if session.jid.domain == self.host and session.data.pop(INACTIVE, None):
            self.server.hooks.fire_all("presence/rebroadcast", session)

    @hook("presence/probe-offline")
    def _probe_offline(self, to: JID, contacts: list[JID]) -> None:
        mine = [c for c in contacts if c.domain == self.host]
        if mine:
            self.api.add_task(self._answer_offline(to, mine))

    async def _answer_offline(self, to: JID, contacts: list[JID]) -> None:
        known = await self.lookup(contacts)
        for c in contacts:
            if any(s.available for s in self.server.sessions.resources(c)):
                continue   # came online meanwhile: its broadcast tells the truth
            el = presence("unavailable", str(c), str(to))
            if c in known:
                seen, status = known[c]
                if status:
                    el.add(STATUS, None, status)
                el.append(idle(seen))
            self.server.router.route(freeze(el))

    # -- XEP-0012 ----------------------------------------------------------------------
    @iq_handler("get", NS, "query", dest="host")
    def uptime(self, ev: StanzaEvent) -> Element:
        return Element(QUERY, {"seconds": str(int(self.server.uptime()))})

    @iq_handler("get", NS, "query", dest=("bare", "self"))
    async def user_last(self, ev: StanzaEvent) -> Element:
        owner, asker = ev.to_jid.bare, ev.from_jid.bare
        if owner != asker:
            roster = RosterModule.of(self.server, self.host)
            allowed = roster is not None and await roster.cache.run(
                owner, lambda r: r.state(asker).frm)
            if not allowed:
                raise StanzaError("forbidden")
        now = time.time()
        online = [s for s in self.server.sessions.resources(owner) if s.available]
        known = (await self.lookup([owner])).get(owner)
        if online:
            if known is None:
                return Element(QUERY, {"seconds": "0"})
            ago = max(0.0, now - known[0])
            active = any(not getattr(s, "data", {}).get(INACTIVE) for s in online)
            if active and ago <= self.opts["online_threshold"]:
                ago = 0.0
            return Element(QUERY, {"seconds": str(int(ago))})
        if known is None:
            raise StanzaError("item-not-found")
        seen, status = known
        return Element(QUERY, {"seconds": str(int(max(0.0, now - seen)))},
                       [status] if status else [])
