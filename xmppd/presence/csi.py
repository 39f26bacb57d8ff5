"""mod_client_state: XEP-0352 client state indication.

While a client says it is ``<inactive/>`` the server holds back what is not
urgent for it: presence updates, chat states and PEP notifications. Held
stanzas are de-duplicated (only the newest presence of each sender, the
newest chat state of each conversation, the newest item of each PEP node is
kept) and delivered, in order, when the client becomes ``<active/>`` again or
when an urgent stanza arrives (a message with a body, a receipt, a chat
marker): the held ones go first, so the client sees them in order. While the server sheds
presence to inactive clients (``xmppd/overload.py``), urgent stanzas go out alone and the
held ones wait for ``<active/>`` (or the queue limit).

The module works through ``session.filters``; it fires ``csi/inactive`` and
``csi/active`` (session) so that other modules can react (mod_last tells
contacts the user is idle).
"""

from __future__ import annotations

from typing import Any, Optional

from ..confval import v_bool, v_int
from ..moduleapi import Module, Option, hook
from ..stanza import MESSAGE, PRESENCE
from ..xml import Element

NS = "urn:xmpp:csi:0"
STATE = "csi"   # session.data: the held stanzas while inactive
CHATSTATES = "http://jabber.org/protocol/chatstates"
PUBSUB_EVENT = "{http://jabber.org/protocol/pubsub#event}event"
CARBONS = "urn:xmpp:carbons:2"
FORWARDED = "{urn:xmpp:forward:0}forwarded"
URGENT_NS = ("urn:xmpp:receipts", "urn:xmpp:chat-markers:0", "jabber:x:conference",
             "urn:xmpp:jingle-message:0", "urn:xmpp:call-invites:0")

PASS = "pass"       # deliver, leave the held ones where they are
URGENT = "urgent"   # deliver the held ones, then this one


def _ns(tag: str) -> str:
    return tag[1:tag.index("}")] if tag[:1] == "{" else ""


class _Held:
    __slots__ = ("stanzas", "flushing")

    def __init__(self) -> None:
        self.stanzas: dict[tuple[str, ...], Element] = {}
        self.flushing = False


class ClientStateModule(Module):
    name = "mod_client_state"
    xeps = ("XEP-0352",)
    options = {
        "queue_presence": Option(True, v_bool, "hold back presence updates"),
        "queue_chat_states": Option(True, v_bool, "hold back chat states"),
        "queue_pep": Option(True, v_bool, "hold back PEP notifications"),
        "queue_limit": Option(250, v_int(1), "held stanzas per session before all are delivered"),
    }

    def setup(self) -> None:
        csi = Element("{%s}csi" % NS).to_bytes("")
        self.api.add_stream_feature("post-auth", lambda s: csi)
        self.api.add_stream_handler("{%s}inactive" % NS, self._inactive)
        self.api.add_stream_handler("{%s}active" % NS, self._active)
        self.api.add_bind2_inline(NS, self._bind2)

    def _bind2(self, session: Any, el: Element) -> None:
        """``<inactive/>`` or ``<active/>`` inside Bind2 (XEP-0386)."""
        if el.tag == "{%s}inactive" % NS:
            self._inactive(session, el)
        elif el.tag == "{%s}active" % NS:
            self._active(session, el)

    # -- the client's state ---------------------------------------------------------
    def _inactive(self, session: Any, el: Element) -> None:
        if STATE in session.data:
            return
        session.data[STATE] = _Held()
        session.filters = session.filters + (self._filter,)
        self.server.hooks.fire_all("csi/inactive", session)

    def _active(self, session: Any, el: Element) -> None:
        held: Optional[_Held] = session.data.pop(STATE, None)
        if held is None:
            return
        session.filters = tuple(f for f in session.filters if f != self._filter)
        for stanza in held.stanzas.values():
            session.send(stanza)
        self.server.hooks.fire_all("csi/active", session)

    @hook("c2s/ended")
    def _ended(self, session: Any, reason: str) -> None:
        session.data.pop(STATE, None)

    # -- what waits -----------------------------------------------------------------------
    def classify(self, el: Element) -> Any:
        """A key to hold ``el`` under, or PASS, or URGENT."""
        tag = el.tag
        attrs = el.attrs
        if tag == PRESENCE:
            if attrs.get("type") in (None, "unavailable") and self.opts["queue_presence"]:
                return ("p", attrs.get("from", ""))
            return PASS
        if tag != MESSAGE:
            return PASS
        return self._message(el, attrs.get("from", ""), attrs.get("to", ""))

    def _message(self, el: Element, frm: str, to: str) -> Any:
        if el.attrs.get("type") == "error":
            return PASS
        chat_state: Optional[str] = None
        pep: Optional[Element] = None
        for c in el.elements():
            tag = c.tag
            if tag == "{jabber:client}body" or _ns(tag) in URGENT_NS:
                return URGENT
            if _ns(tag) == CHATSTATES:
                chat_state = tag
            elif tag == PUBSUB_EVENT:
                pep = c
            elif _ns(tag) == CARBONS:
                fwd = c.find(FORWARDED)
                inner = fwd.find(MESSAGE) if fwd is not None else None
                if inner is None:
                    return PASS
                return self._message(inner, inner.attrs.get("from", ""),
                                     inner.attrs.get("to", ""))
        if chat_state is not None and self.opts["queue_chat_states"]:
            return ("cs", frm, to)
        if pep is not None and self.opts["queue_pep"]:
            items = pep.first_child()
            node = items.attrs.get("node", "") if items is not None else ""
            return ("pep", frm, node)
        return PASS

    def _filter(self, session: Any, el: Element) -> Optional[Element]:
        held: Optional[_Held] = session.data.get(STATE)
        if held is None or held.flushing:
            return el
        key = self.classify(el)
        if key is PASS:
            return el
        if key is URGENT:
            # under overload (xmppd/overload.py) the held presence waits for <active/>
            if not (self.server.overload and self.server.load.shed("presence-inactive")):
                self._flush(session, held)
            return el
        held.stanzas.pop(key, None)
        held.stanzas[key] = el
        if len(held.stanzas) > self.opts["queue_limit"]:
            self._flush(session, held)
        return None

    @staticmethod
    def _flush(session: Any, held: _Held) -> None:
        if not held.stanzas:
            return
        held.flushing = True
        try:
            stanzas = list(held.stanzas.values())
            held.stanzas.clear()
            for stanza in stanzas:
                session.send(stanza)
        finally:
            held.flushing = False
