"""Default delivery rules for local users (RFC 6121 section 8.5).

These handlers sit at the lowest priority on ``message/*``, ``presence/*`` and
``iq/*`` events: feature modules (offline storage, carbons, presence, MUC...)
hook the same events at higher priority and take over what they handle.

When a chat or normal message finds no available resource, the event
``message/offline`` is fired; whoever stores it returns True. Otherwise the
sender gets ``service-unavailable``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .stanza import StanzaEvent

if TYPE_CHECKING:
    from .server import Server

LOWEST = -1000


def best_resources(sessions: list[Any]) -> list[Any]:
    """Available resources with the highest non-negative priority."""
    best: list[Any] = []
    top = -1
    for s in sessions:
        if not s.available or s.priority < 0 or s.gone:
            continue
        if s.priority > top:
            top = s.priority
            best = [s]
        elif s.priority == top:
            best.append(s)
    return best


def message_bare(ev: StanzaEvent) -> bool:
    server = ev.server
    type_ = ev.type
    if type_ == "groupchat":
        return ev.error("service-unavailable")
    sessions = server.sessions.resources(ev.to_jid)
    if type_ == "headline":
        for s in sessions:
            if s.available and s.priority >= 0:
                s.send(ev.stanza)
        return True
    targets = best_resources(sessions)
    if targets:
        for s in targets:
            s.send(ev.stanza)
        return True
    if server.hooks.fire("message/offline", ev) is not None:
        return True
    if type_ == "error":
        return True
    return ev.error("service-unavailable")


def message_full(ev: StanzaEvent) -> bool:
    server = ev.server
    session = server.sessions.get(ev.to_jid)
    if session is not None and not session.gone:
        session.send(ev.stanza)
        return True
    type_ = ev.type
    if type_ in ("chat", "normal"):
        # RFC 6121 8.5.3.2.1: no such resource; handle as if sent to the bare JID
        return bool(server.hooks.fire("message/bare", ev))
    if type_ == "groupchat":
        return ev.error("service-unavailable")
    return True  # headline and error: silently dropped


def presence_bare(ev: StanzaEvent) -> bool:
    """Directed presence to a bare JID: every available resource gets it."""
    if ev.type not in ("available", "unavailable", "error"):
        return True  # subscriptions and probes belong to the presence module
    for s in ev.server.sessions.resources(ev.to_jid):
        if s.available:
            s.send(ev.stanza)
    return True


def presence_full(ev: StanzaEvent) -> bool:
    session = ev.server.sessions.get(ev.to_jid)
    if ev.type in ("subscribe", "subscribed", "unsubscribe", "unsubscribed"):
        return bool(ev.server.hooks.fire("presence/bare", ev))
    if session is not None:
        session.send(ev.stanza)
    return True


def presence_self(ev: StanzaEvent) -> bool:
    """Broadcast presence from a client: record availability and priority."""
    session = ev.origin
    if session is None:
        return True
    if ev.type == "available":
        prio = ev.stanza.findtext("{jabber:client}priority")
        try:
            session.priority = max(-128, min(127, int(prio))) if prio else 0
        except ValueError:
            session.priority = 0
        first = not session.available
        session.available = True
        session.presence = ev.stanza
        ev.server.sessions.changed(session)
        ev.server.hooks.fire_all("presence/available", session, first)
    elif ev.type == "unavailable":
        session.available = False
        session.presence = ev.stanza
        ev.server.sessions.changed(session)
        ev.server.hooks.fire_all("presence/unavailable", session)
    return True


def iq_full(ev: StanzaEvent) -> bool:
    session = ev.server.sessions.get(ev.to_jid)
    if session is not None:
        session.send(ev.stanza)
        return True
    if ev.type in ("get", "set"):
        return ev.error("service-unavailable")
    return True


def iq_result_local(ev: StanzaEvent) -> bool:
    """Results and errors addressed to the server or a bare JID: pending requests."""
    ev.server.iq_tracker.resolve(ev.stanza)
    return True


def install(server: Server) -> None:
    h = server.hooks
    h.add("message/bare", message_bare, LOWEST)
    h.add("message/full", message_full, LOWEST)
    h.add("presence/bare", presence_bare, LOWEST)
    h.add("presence/full", presence_full, LOWEST)
    h.add("presence/self", presence_self, LOWEST)
    h.add("iq/full", iq_full, LOWEST)
    for dest in ("host", "bare", "self"):
        h.add(f"iq-result/{dest}", iq_result_local, LOWEST)
        h.add(f"iq-error/{dest}", iq_result_local, LOWEST)
    # a message to the server itself: nothing to do with it
    h.add("message/host", lambda ev: True, LOWEST)
    h.add("presence/host", lambda ev: True, LOWEST)
