"""XEP-0280 message carbons: every device of a user sees the whole conversation.

A resource that enabled carbons gets a ``<sent/>`` copy of what the user's
other resources send and a ``<received/>`` copy of what they receive, for
chat messages and IM payloads (receipts, markers, chat states), so that
reading on one device clears the others. ``<private/>`` or a ``no-copy``
hint opts a message out.
"""

from __future__ import annotations

from typing import Any

from ..delivery import best_resources
from ..jid import JID
from ..moduleapi import Module, hook, iq_handler
from ..sessions import flags_of
from ..stanza import BODY, MESSAGE, StanzaEvent
from ..xml import Element
from .common import CHATSTATES_NS, MARKERS_NS, RECEIPTS_NS, hint

NS = "urn:xmpp:carbons:2"
FORWARD_NS = "urn:xmpp:forward:0"
MUC_USER = "{http://jabber.org/protocol/muc#user}x"
KEY = "carbons"
_IM_NS = (RECEIPTS_NS, MARKERS_NS, CHATSTATES_NS)


def eligible(el: Element, type_: str) -> bool:
    """XEP-0280 section 6 (urn:xmpp:carbons:rules:0)."""
    if type_ not in ("chat", "normal"):
        return False
    has_body = False
    for c in el.children:
        if not isinstance(c, Element):
            continue
        tag = c.tag
        if tag == "{%s}private" % NS or tag == MUC_USER:
            return False
        if tag == "{%s}received" % NS or tag == "{%s}sent" % NS:
            return False  # never a carbon of a carbon
        if tag == BODY:
            has_body = True
        elif c.ns in _IM_NS:
            has_body = True
    if hint(el, "no-copy"):
        return False
    return type_ == "chat" or has_body


def wrap(direction: str, el: Element, user: JID, to: str) -> Element:
    fwd = Element("{%s}forwarded" % FORWARD_NS, {}, [el])
    return Element(MESSAGE, {"from": str(user), "to": to, "type": el.attrs.get("type", "normal")},
                   [Element("{%s}%s" % (NS, direction), {}, [fwd])])


class Carbons(Module):
    name = "mod_carboncopy"
    xeps = ("XEP-0280",)
    features = (NS, "urn:xmpp:carbons:rules:0")

    def setup(self) -> None:
        self.api.add_bind2_inline(NS, self._bind2)

    def _bind2(self, session: Any, el: Element) -> None:
        """``<enable/>`` inside Bind2 (XEP-0386)."""
        if el.tag == "{%s}enable" % NS:
            self.server.sessions.set_flag(session, KEY, True)

    @iq_handler("set", NS, "enable", dest="self")
    def enable(self, ev: StanzaEvent) -> None:
        if ev.origin is not None and hasattr(ev.origin, "data"):
            self.server.sessions.set_flag(ev.origin, KEY, True)
        return None

    @iq_handler("set", NS, "disable", dest="self")
    def disable(self, ev: StanzaEvent) -> None:
        if ev.origin is not None and hasattr(ev.origin, "data"):
            self.server.sessions.set_flag(ev.origin, KEY, False)
        return None

    def _copies(self, user: JID, skip: list[Any], direction: str, el: Element) -> None:
        """Copies for the user's other resources that enabled carbons, on any node."""
        skipped = {s.jid for s in skip}
        for s in self.server.sessions.resources(user):
            if s.jid in skipped or KEY not in flags_of(s) or not s.available:
                continue
            s.send(wrap(direction, el, user, str(s.jid)))

    @hook("pre-message/bare", 95)
    @hook("pre-message/full", 95)
    @hook("pre-message/remote", 95)
    def sent(self, ev: StanzaEvent) -> None:
        """What one resource sends, the others see."""
        if ev.origin is None or not eligible(ev.stanza, ev.type):
            return None
        frm = ev.from_jid
        to = ev.to_jid
        skip = [ev.origin]
        if to.bare == frm.bare:
            return None  # to oneself: the other resources get it anyway
        self._copies(frm.bare, skip, "sent", ev.stanza)
        return None

    @hook("message/bare", 500)
    def received_bare(self, ev: StanzaEvent) -> None:
        if not eligible(ev.stanza, ev.type) or ev.to_jid.bare == ev.from_jid.bare:
            return None
        sessions = self.server.sessions.resources(ev.to_jid)
        direct = best_resources(sessions)
        if direct:
            self._copies(ev.to_jid.bare, direct, "received", ev.stanza)
        return None

    @hook("message/full", 500)
    def received_full(self, ev: StanzaEvent) -> None:
        if not eligible(ev.stanza, ev.type) or ev.to_jid.bare == ev.from_jid.bare:
            return None
        target = self.server.sessions.get(ev.to_jid)
        if target is None:
            return None  # delivery falls back to the bare JID, carbons with it
        self._copies(ev.to_jid.bare, [target], "received", ev.stanza)
        return None
