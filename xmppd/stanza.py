"""Stanza helpers: stanza errors (RFC 6120 8.3), replies, and the event object.

Handlers raise :class:`StanzaError`; the router turns it into an error reply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from .xml import CLIENT_NS, Element

if TYPE_CHECKING:
    from .jid import JID

STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
STREAMS_NS = "urn:ietf:params:xml:ns:xmpp-streams"
MESSAGE = "{jabber:client}message"
PRESENCE = "{jabber:client}presence"
IQ = "{jabber:client}iq"
BODY = "{jabber:client}body"
STANZA_TAGS = {MESSAGE: "message", PRESENCE: "presence", IQ: "iq"}

# RFC 6120 8.3.3: default error type per condition
ERROR_TYPES = {
    "bad-request": "modify", "conflict": "cancel", "feature-not-implemented": "cancel",
    "forbidden": "auth", "gone": "cancel", "internal-server-error": "cancel",
    "item-not-found": "cancel", "jid-malformed": "modify", "not-acceptable": "modify",
    "not-allowed": "cancel", "not-authorized": "auth", "policy-violation": "modify",
    "recipient-unavailable": "wait", "redirect": "modify", "registration-required": "auth",
    "remote-server-not-found": "cancel", "remote-server-timeout": "wait",
    "resource-constraint": "wait", "service-unavailable": "cancel",
    "subscription-required": "auth", "undefined-condition": "cancel",
    "unexpected-request": "wait",
}


class StanzaError(Exception):
    """Raise from a handler to answer with a stanza error."""

    def __init__(self, condition: str, type: Optional[str] = None, text: Optional[str] = None,
                 app: Optional[Element] = None, by: Optional[str] = None) -> None:
        super().__init__(condition if text is None else f"{condition}: {text}")
        self.condition = condition
        self.type = type or ERROR_TYPES.get(condition, "cancel")
        self.text = text
        self.app = app
        self.by = by

    def to_element(self) -> Element:
        err = Element("{jabber:client}error", {"type": self.type})
        if self.by:
            err.attrs["by"] = self.by
        err.append(Element("{%s}%s" % (STANZAS_NS, self.condition)))
        if self.text:
            err.append(Element("{%s}text" % STANZAS_NS, {"xml:lang": "en"}, [self.text]))
        if self.app is not None:
            err.append(self.app)
        return err


def error_reply(stanza: Element, error: StanzaError) -> Element:
    """The error answer to ``stanza``: to/from swapped, original content kept."""
    attrs = {"type": "error"}
    frm = stanza.attrs.get("to")
    to = stanza.attrs.get("from")
    if to:
        attrs["to"] = to
    if frm:
        attrs["from"] = frm
    sid = stanza.attrs.get("id")
    if sid is not None:
        attrs["id"] = sid
    children: list[Any] = []
    if stanza.tag != IQ:
        children.extend(c for c in stanza.children if isinstance(c, Element))
    children.append(error.to_element())
    return Element(stanza.tag, attrs, children)


def iq_result(iq: Element, payload: Optional[Element] = None) -> Element:
    attrs = {"type": "result", "id": iq.attrs.get("id", "")}
    if "from" in iq.attrs:
        attrs["to"] = iq.attrs["from"]
    if "to" in iq.attrs:
        attrs["from"] = iq.attrs["to"]
    return Element(IQ, attrs, [payload] if payload is not None else [])


def make_iq(type: str, payload: Optional[Element], *, to: Optional[str] = None,
            frm: Optional[str] = None, id: Optional[str] = None) -> Element:
    attrs = {"type": type}
    if to:
        attrs["to"] = to
    if frm:
        attrs["from"] = frm
    if id:
        attrs["id"] = id
    return Element(IQ, attrs, [payload] if payload is not None else [])


def make_message(to: str, body: Optional[str] = None, *, frm: Optional[str] = None,
                 type: str = "chat", id: Optional[str] = None) -> Element:
    attrs = {"to": to, "type": type}
    if frm:
        attrs["from"] = frm
    if id:
        attrs["id"] = id
    msg = Element(MESSAGE, attrs)
    if body is not None:
        msg.append(Element(BODY, {}, [body]))
    return msg


def payload_key(el: Element) -> str:
    """``ns:name`` of the first child (iq payload dispatch key)."""
    child = el.first_child()
    if child is None:
        return ""
    tag = child.tag
    if tag[0] == "{":
        i = tag.index("}")
        return f"{tag[1:i]}:{tag[i + 1:]}"
    return tag


class StanzaEvent:
    """What a hook handler receives for a routed stanza."""

    __slots__ = ("stanza", "origin", "from_jid", "to_jid", "kind", "type", "host", "server")

    def __init__(self, server: Any, stanza: Element, origin: Any, from_jid: JID,
                 to_jid: JID, kind: str, type: str, host: str) -> None:
        self.server = server
        self.stanza = stanza
        self.origin = origin
        self.from_jid = from_jid
        self.to_jid = to_jid
        self.kind = kind
        self.type = type
        self.host = host

    def reply(self, stanza: Element) -> None:
        """Send ``stanza`` back towards the sender."""
        self.server.router.route(stanza)

    def error(self, condition: str, type: Optional[str] = None, text: Optional[str] = None) -> bool:
        """Bounce the stanza with an error (never answers errors); returns True."""
        self.server.router.bounce(self.stanza, StanzaError(condition, type, text), self.kind,
                                  self.type, self.origin)
        return True

    def __repr__(self) -> str:
        return f"<StanzaEvent {self.kind}/{self.type} {self.from_jid} -> {self.to_jid}>"


def not_a_request(ev: StanzaEvent) -> bool:
    """At a service's JID (a component): True when ``ev`` is not an iq get or set, which
    the service does not answer (a message gets ``service-unavailable``)."""
    if ev.kind != "iq":
        if ev.kind == "message":
            ev.error("service-unavailable")
        return True
    return ev.type not in ("get", "set")


__all__ = ["CLIENT_NS", "StanzaError", "StanzaEvent", "error_reply", "iq_result", "make_iq",
           "make_message", "payload_key"]
