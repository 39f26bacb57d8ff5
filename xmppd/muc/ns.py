"""Namespaces and small element builders shared by the MUC files."""

from __future__ import annotations

from typing import Optional

from ..xml import Element

MUC = "http://jabber.org/protocol/muc"
USER = MUC + "#user"
ADMIN = MUC + "#admin"
OWNER = MUC + "#owner"
ROOMCONFIG = MUC + "#roomconfig"
ROOMINFO = MUC + "#roominfo"
REQUEST = MUC + "#request"
UNIQUE = MUC + "#unique"
STABLE_ID = MUC + "#stable_id"
SELF_PING_OPT = MUC + "#self-ping-optimization"
CONFERENCE = "jabber:x:conference"  # XEP-0249 direct invitations
DATA = "jabber:x:data"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
SID = "urn:xmpp:sid:0"
DELAY = "urn:xmpp:delay"
MAM = "urn:xmpp:mam:2"
MAM_EXT = "urn:xmpp:mam:2#extended"
RSM = "http://jabber.org/protocol/rsm"
FORWARD = "urn:xmpp:forward:0"
PING = "urn:xmpp:ping"
VCARD = "vcard-temp"
VCARD_UPDATE = "vcard-temp:x:update"
HINTS = "urn:xmpp:hints"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

C = "{jabber:client}"
MESSAGE = C + "message"
PRESENCE = C + "presence"
IQ = C + "iq"
BODY = C + "body"
SUBJECT = C + "subject"

X_MUC = "{%s}x" % MUC
X_USER = "{%s}x" % USER
X_DATA = "{%s}x" % DATA
STANZA_ID = "{%s}stanza-id" % SID


def q(ns: str, name: str) -> str:
    return "{%s}%s" % (ns, name)


def user_x(*codes: int, items: tuple[Element, ...] = ()) -> Element:
    """``<x xmlns='...muc#user'>`` with items then status codes."""
    x = Element(X_USER)
    for it in items:
        x.append(it)
    for code in codes:
        x.append(Element(q(USER, "status"), {"code": str(code)}))
    return x


def item(ns: str, affiliation: Optional[str] = None, role: Optional[str] = None,
         jid: Optional[str] = None, nick: Optional[str] = None) -> Element:
    attrs: dict[str, str] = {}
    if affiliation is not None:
        attrs["affiliation"] = affiliation
    if jid is not None:
        attrs["jid"] = jid
    if nick is not None:
        attrs["nick"] = nick
    if role is not None:
        attrs["role"] = role
    return Element(q(ns, "item"), attrs)
