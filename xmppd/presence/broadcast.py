"""Presence broadcast (RFC 6121 section 4), from memory only.

- Initial presence goes to the contacts with a subscription ``from``/``both``
  and to the user's own available resources; the server then answers the
  probes itself, from the presence its online contacts last broadcast
  (``presence/probe-offline`` lets mod_last answer for offline contacts), and
  delivers the subscription requests and answers that waited for this login.
- Updates go to the same contacts; unavailable presence also goes to the
  entities that got directed presence, and is sent by the server when a
  session ends for any reason (``c2s/ended``).
- ``presence/decorate`` (session, copy of the presence) lets modules add to
  what contacts receive (mod_last adds XEP-0319 idle); ``presence/rebroadcast``
  (session) sends the current presence again, decorated afresh.

Every presence is routed through the router, so filters (blocking) apply;
nothing here waits on the database once the user's roster is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from ..jid import JID
from ..moduleapi import ModuleAPI
from ..stanza import StanzaEvent
from ..xml import Element
from ..xmlstream import parse_stanza
from .rosters import Roster, RosterCache
from .stanzas import freeze, presence

if TYPE_CHECKING:
    from .roster import RosterModule

OUT = "presence:out"            # session.data: the presence contacts last received
DIRECTED = "presence:directed"  # session.data: JIDs given directed presence


class Broadcast:
    def __init__(self, mod: RosterModule) -> None:
        self.mod = mod
        self.server = mod.server
        self.router = mod.server.router
        self.cache = mod.cache
        self.host = mod.host

    def setup(self, api: ModuleAPI) -> None:
        api.hook("presence/available", self._available)
        api.hook("presence/unavailable", self._unavailable)
        api.hook("presence/rebroadcast", self.rebroadcast)

    # -- helpers ---------------------------------------------------------------------
    def outgoing(self, session: Any, el: Element) -> Element:
        """What contacts receive for ``el``: a decorated copy, serialized once."""
        out = el.copy()
        out.attrs.pop("to", None)
        out.attrs["from"] = session.jid_str
        self.server.hooks.fire_all("presence/decorate", session, out)
        return freeze(out)

    def _reachable(self, jid: JID) -> bool:
        d = jid.domain
        return d in self.server.hosts or d in self.router.components or \
            d in self.router.remote_components or self.server.hooks.has("route/remote")

    def send(self, out: Element, to: JID) -> None:
        if self._reachable(to):
            el = out.copy()
            el.attrs["to"] = str(to)
            self.router.route(el)

    def _cache_for(self, domain: str) -> Optional[RosterCache]:
        if domain == self.host:
            return self.cache
        from .roster import RosterModule
        mod = RosterModule.of(self.server, domain)
        return mod.cache if mod is not None else None

    def _current(self, session: Any) -> bool:
        return self.server.sessions.get_local(session.jid) is session

    # -- the user's own broadcast presence ---------------------------------------------
    def _available(self, session: Any, first: bool) -> None:
        if session.jid.domain != self.host or session.presence is None:
            return
        out = self.outgoing(session, session.presence)
        session.data[OUT] = out
        self.cache.run(session.jid.bare, lambda r: self._broadcast(r, session, out, first))

    def _broadcast(self, r: Roster, session: Any, out: Element, first: bool) -> None:
        if not self._current(session):
            return
        for c in r.subscribers():
            self.send(out, c)
        self.send(out, r.user)
        if first:
            self._probe_contacts(r, session)
            self._deliver_pending(r, session)

    def rebroadcast(self, session: Any) -> None:
        if session.jid.domain != self.host or not session.available or session.presence is None:
            return
        out = self.outgoing(session, session.presence)
        session.data[OUT] = out

        def go(r: Roster) -> None:
            if self._current(session) and session.data.get(OUT) is out:
                for c in r.subscribers():
                    self.send(out, c)
                self.send(out, r.user)
        self.cache.run(session.jid.bare, go)

    def _unavailable(self, session: Any) -> None:
        if session.jid.domain != self.host or session.presence is None:
            return
        self._send_unavailable(session, self.outgoing(session, session.presence))

    def session_ended(self, session: Any) -> None:
        """The session is gone (close, timeout, kill, replaced): tell who knew it was online."""
        if session.available:
            session.available = False
            self._send_unavailable(session, self.outgoing(
                session, presence("unavailable", session.jid_str)))
        elif session.data.get(DIRECTED):
            self._send_unavailable(session, freeze(presence("unavailable", session.jid_str)))

    def _send_unavailable(self, session: Any, out: Element) -> None:
        session.data.pop(OUT, None)
        directed: set[JID] = session.data.pop(DIRECTED, None) or set()

        def go(r: Roster) -> None:
            subs = r.subscribers()
            for c in subs:
                self.send(out, c)
            self.send(out, r.user)
            done = set(subs)
            for d in directed:
                if d.bare not in done:
                    self.send(out, d)
        self.cache.run(session.jid.bare, go)

    # -- directed presence (RFC 6121 4.6) --------------------------------------------------
    def directed(self, ev: StanzaEvent) -> None:
        session = ev.origin
        if session is None or not hasattr(session, "data") or ev.to_jid.bare == ev.from_jid.bare:
            return
        if ev.type == "available":
            session.data.setdefault(DIRECTED, set()).add(ev.to_jid)
        else:
            d = session.data.get(DIRECTED)
            if d:
                d.discard(ev.to_jid)

    # -- probes (RFC 6121 4.3), answered by the server -------------------------------------
    def _probe_contacts(self, r: Roster, session: Any) -> None:
        offline = []
        hosts = self.server.hosts
        for c in r.publishers():
            if c.domain not in hosts:
                # a contact on another server: its server answers (RFC 6121 4.3.1, the
                # probe comes from the user's bare JID)
                self.server.router.route(presence("probe", str(r.user), str(c)))
                continue
            if c.local is None:
                continue
            if any(s.available for s in self.server.sessions.resources(c)):
                cache = self._cache_for(c.domain)
                if cache is not None:
                    cache.run(c, lambda cr: self._answer(cr, r.user, session.jid))
            else:
                offline.append(c)
        if offline:
            # the prober's roster says 'to': trusted for offline local contacts
            self.server.hooks.fire_all("presence/probe-offline", session.jid, offline)

    def probe(self, frm: JID, contact: JID) -> None:
        """A probe from ``frm`` about ``contact`` (sent by a client, or routed)."""
        if contact.domain not in self.server.hosts or contact.local is None:
            return
        cache = self._cache_for(contact.domain)
        if cache is None:
            return
        prober = frm.bare
        # a probe another node handed over: answer for our sessions only (decided now,
        # the answer may run after the roster loads)
        forward = not self.server.forwarded

        def answer(cr: Roster) -> None:
            if not cr.state(prober).frm:
                return   # RFC 6121 4.3.2: reveal nothing
            if any(s.available for s in self.server.sessions.resources(contact)):
                self._answer(cr, prober, frm, forward)
            else:
                self.server.hooks.fire_all("presence/probe-offline", frm, [contact])
        cache.run(contact, answer)

    def _answer(self, cr: Roster, prober: JID, to: JID, forward: bool = True) -> None:
        if not cr.state(prober).frm:
            return
        for s in self.server.sessions.resources(cr.user):
            if not s.available:
                continue
            data = getattr(s, "data", None)
            if data is not None:
                out = data.get(OUT)
                if out is not None:
                    self.send(out, to)
        if forward:
            self._probe_elsewhere(cr.user, to)

    def _probe_elsewhere(self, user: JID, prober: JID) -> None:
        """Sessions of ``user`` on other cluster nodes: those nodes answer for them."""
        nodes = {s.node for s in self.server.sessions.resources(user)
                 if s.available and getattr(s, "data", None) is None}
        for node in nodes:
            self.server.hand_to(node, presence("probe", str(prober), str(user)))

    # -- after subscription changes ------------------------------------------------------------
    def send_current(self, user: JID, contact: JID, local_only: bool = False) -> None:
        """``contact`` may now see ``user``: send the presence of each available resource
        (of this node only: ``local_only``, when every node acts for its own sessions)."""
        for s in self.server.sessions.local_resources(user):
            out = s.data.get(OUT) if s.available else None
            if out is not None:
                self.send(out, contact)
        if not local_only:
            self._probe_elsewhere(user, contact)

    def send_unavailable(self, user: JID, contact: JID, local_only: bool = False) -> None:
        """``contact`` may no longer see ``user``."""
        sessions = self.server.sessions
        for s in sessions.local_resources(user) if local_only else sessions.resources(user):
            if s.available:
                self.send(freeze(presence("unavailable", str(s.jid))), contact)

    # -- what waited for this login ----------------------------------------------------------------
    def _deliver_pending(self, r: Roster, session: Any) -> None:
        hooks = self.server.hooks
        for item in list(r.items.values()):
            if item.request is None and item.answer is None:
                continue
            if hooks.fire("privacy/blocked", r.user, item.jid):
                continue
            if item.request is not None:
                session.send(parse_stanza(item.request.encode()))
            if item.answer is not None:
                session.send(parse_stanza(item.answer.encode()))
                item.answer = None
                self.cache.save(r, item, bump=False)
